//! One model shared between threads through the documented synchronisation (a `Mutex`), and
//! loading and dropping a model many times without memory growth.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use dlr_sys::{Input, Model};
use dlr_test_models::{CLASSES, ColourModel, paths};

#[test]
fn one_model_behind_a_mutex_serves_many_threads() {
    let shared = Arc::new(Mutex::new(load("colour")));
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for round in 0..10 {
                    let (label, rgb) = CLASSES[(worker * 3 + round) % CLASSES.len()];
                    let data = uniform_f32(&ColourModel::COLOUR, rgb);
                    let logits = {
                        let mut model = shared.lock().unwrap();
                        let out = model
                            .run(&[Input::f32("data", &[1, 224, 224, 3], &data)])
                            .unwrap();
                        out[0].data.as_f32().unwrap().to_vec()
                    };
                    assert_eq!(label_of(&logits), label);
                    assert_logits_close(&logits, rgb);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker thread");
    }
}

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[test]
fn loading_and_dropping_200_times_keeps_memory_flat() {
    let lib = library();
    let dir = paths::model_dir("colour");
    let data = uniform_f32(&ColourModel::COLOUR, [0, 0, 255]);
    let cycle = || {
        let mut model = Model::load_with(Arc::clone(&lib), &dir, &Default::default()).unwrap();
        let out = model
            .run(&[Input::f32("data", &[1, 224, 224, 3], &data)])
            .unwrap();
        assert_eq!(label_of(out[0].data.as_f32().unwrap()), "blue");
    };
    // Warm up allocator arenas and libdlr's one-time state before measuring.
    for _ in 0..20 {
        cycle();
    }
    let before = resident_kib();
    for _ in 0..200 {
        cycle();
    }
    let after = resident_kib();
    let growth = after.saturating_sub(before);
    println!("resident memory: {before} KiB before, {after} KiB after 200 cycles");
    // One model's buffers are ~1.2 MiB (input + normalised copy); a leak of even one per
    // cycle would add ~240 MiB.
    assert!(
        growth < 16 * 1024,
        "grew by {growth} KiB over 200 load/drop cycles"
    );
}
