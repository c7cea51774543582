//! A scripted backend for the unit tests of the pool and the HTTP layer: no runtime, no
//! clock. The first input element says what a run does ([`OK`], [`HOLD`], [`PANIC`],
//! [`FAIL`]); the second is an id the test chooses. Every run reports its id on the `runs`
//! channel as it starts, and a [`HOLD`] run then waits for one message on the gate, so a test
//! knows exactly when a worker is busy and decides when it is free again.

use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::{
    Backend, BackendError, BackendFactory, InputTensor, ModelDescription, Output, Tensor,
    TensorDesc,
};

/// Answers at once.
pub(crate) const OK: f32 = 0.0;
/// Reports its start, then waits for the gate.
pub(crate) const HOLD: f32 = 1.0;
/// Panics.
pub(crate) const PANIC: f32 = 2.0;
/// Returns [`BackendError::Run`].
pub(crate) const FAIL: f32 = 3.0;

/// The values every successful run returns (two classes).
pub(crate) const VALUES: [f64; 2] = [2.0, 1.0];

/// A job's input: what to do and an id.
pub(crate) fn input(action: f32, id: u8) -> Tensor {
    Tensor::F32(vec![action, f32::from(id)])
}

/// The test's side of a fake: run starts, the gate, and the gate of backend creation.
#[derive(Debug)]
pub(crate) struct Controls {
    /// Ids of runs as they start (warm-up runs have id 0).
    pub runs: Receiver<u8>,
    /// One message lets one [`HOLD`] run finish.
    pub gate: Sender<()>,
    /// One message lets one worker create its backend (when the factory is `gated`).
    pub create: Sender<()>,
}

/// Builds [`Fake`] backends.
#[derive(Debug)]
pub(crate) struct FakeFactory {
    description: ModelDescription,
    runs: Sender<u8>,
    gate: Receiver<()>,
    create: Option<Receiver<()>>,
    /// When set, `create` fails with this text.
    fail: Mutex<Option<String>>,
}

impl FakeFactory {
    /// A factory whose backends start at once.
    pub(crate) fn new() -> (Self, Controls) {
        Self::build(false)
    }

    /// A factory whose every `create` waits for a message on `Controls::create`.
    pub(crate) fn gated() -> (Self, Controls) {
        Self::build(true)
    }

    /// Makes `create` fail with `reason`.
    pub(crate) fn failing(self, reason: &str) -> Self {
        *self.fail.lock().unwrap() = Some(reason.into());
        self
    }

    fn build(gated: bool) -> (Self, Controls) {
        let (runs_tx, runs_rx) = crossbeam_channel::unbounded();
        let (gate_tx, gate_rx) = crossbeam_channel::unbounded();
        let (create_tx, create_rx) = crossbeam_channel::unbounded();
        let tensor = |shape: Vec<i64>| TensorDesc {
            name: Some("x".into()),
            shape,
            dtype: "float32".into(),
        };
        let factory = Self {
            description: ModelDescription {
                runtime: "fake",
                runtime_version: "0".into(),
                runtime_library: "/nowhere/libfake.so".into(),
                backend: "scripted".into(),
                inputs: vec![tensor(vec![1, 1, 1, 3])],
                outputs: vec![tensor(vec![1, 2])],
            },
            runs: runs_tx,
            gate: gate_rx,
            create: gated.then_some(create_rx),
            fail: Mutex::new(None),
        };
        let controls = Controls {
            runs: runs_rx,
            gate: gate_tx,
            create: create_tx,
        };
        (factory, controls)
    }
}

impl BackendFactory for FakeFactory {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn create(&self, _worker: usize) -> Result<Box<dyn Backend>, BackendError> {
        if let Some(create) = &self.create {
            create.recv().expect("the test holds the creation gate");
        }
        if let Some(reason) = self.fail.lock().unwrap().clone() {
            return Err(BackendError::Load(reason.into()));
        }
        Ok(Box::new(Fake {
            runs: self.runs.clone(),
            gate: self.gate.clone(),
        }))
    }
}

/// One scripted model instance.
struct Fake {
    runs: Sender<u8>,
    gate: Receiver<()>,
}

impl Backend for Fake {
    fn run(&mut self, input: InputTensor<'_>) -> Result<Output, BackendError> {
        let Tensor::F32(data) = input.data else {
            panic!("the fake takes float32 input");
        };
        let action = data[0];
        let id = data.get(1).copied().unwrap_or_default() as u8;
        let _ = self.runs.send(id);
        if action == HOLD {
            self.gate.recv().expect("the test holds the gate");
        } else if action == PANIC {
            panic!("scripted panic");
        } else if action == FAIL {
            return Err(BackendError::Run("scripted failure".into()));
        }
        Ok(Output {
            values: VALUES.to_vec(),
            elapsed: Duration::ZERO,
        })
    }
}
