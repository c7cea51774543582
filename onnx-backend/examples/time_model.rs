//! Times bare ONNX Runtime runs of a model with uniform grey input, the baseline a service
//! benchmark compares against: `time_model PATH [RUNS] [THREADS]` (PATH: a `.onnx` file or a
//! directory with `model.onnx`). ONNX Runtime is found by the usual discovery
//! (`ONNXRUNTIME_LIBRARY_PATH`, ...). Prints the median and mean run time.

use std::time::Instant;

use onnx_backend::{DType, Model, ModelOptions, TensorData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: time_model PATH [RUNS] [THREADS]")?;
    let runs: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    let threads: Option<usize> = args.next().map(|t| t.parse()).transpose()?;
    let options = ModelOptions {
        threads,
        library_path: None,
        ..Default::default()
    };
    let mut model = Model::load(path.as_ref(), &options)?;
    let input = model.metadata().image_input.clone();
    let f32_data = vec![128f32; input.element_count()];
    let u8_data = vec![128u8; input.element_count()];
    let data = match input.dtype {
        DType::F32 => TensorData::F32(&f32_data),
        DType::U8 => TensorData::U8(&u8_data),
    };
    model.run(data)?;
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            model.run(data).map(|_| start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{path}: {} runs, median {:.2} ms, mean {mean:.2} ms, threads {}, ONNX Runtime {} ({})",
        times.len(),
        times[times.len() / 2],
        model.threads(),
        model.metadata().ort_version,
        model.metadata().library_path.display()
    );
    Ok(())
}
