//! Times runs of a model directory with uniform grey input: `time_model DIR [RUNS]`.
//! Used to calibrate the heavy test model; prints the median and mean run time.

use std::time::Instant;

use dlr_sys::{DType, Input, Model, ModelOptions, TensorData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: time_model DIR [RUNS]")?;
    let runs: usize = args.next().map_or(Ok(10), |r| r.parse())?;
    let mut model = Model::load(dir.as_ref(), &ModelOptions::default())?;
    let info = model.metadata().inputs[0].clone();
    let name = info.name.clone().unwrap_or_default();
    let f32_data = vec![128f32; info.element_count()];
    let u8_data = vec![128u8; info.element_count()];
    let data = match DType::parse(&info.dtype) {
        Some(DType::U8) => TensorData::U8(&u8_data),
        _ => TensorData::F32(&f32_data),
    };
    let input = Input {
        name: &name,
        shape: &info.shape,
        data,
    };
    model.run(&[input])?;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            model
                .run(&[input])
                .map(|_| start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{dir}: {runs} runs, median {:.2} ms, mean {mean:.2} ms, threads {}",
        times[times.len() / 2],
        model.threads()
    );
    Ok(())
}
