//! The reference interpreter of incept's IR.
//!
//! Runs any valid [`incept_ir::Graph`] on the CPU in float32 (for speed) or
//! float64 (the oracle that float32 results are measured against), and can
//! capture ("tap") any named value without changing the result. It never
//! mutates the graph it runs.
//!
//! Convolutions run as GEMMs (the `gemm` crate) over im2col columns (none for
//! 1x1 convolutions), with BatchNorm and ReLU applied in the GEMM's epilogue;
//! concatenations are written in place; activation buffers are reused once
//! their last reader has run.

mod error;
mod exec;
mod float;
mod fork;
pub mod kernels;
mod plan;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use incept_ir::{Graph, Tensor, ValueId};

pub use error::InterpError;
pub use float::Float;

use crate::exec::{Arena, execute};
use crate::plan::{NodeWeights, Plan, build_plan, prepare_weights};

/// The arithmetic the interpreter computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// IEEE binary32, as PyTorch and onnxruntime run the model.
    #[default]
    F32,
    /// IEEE binary64: the oracle.
    F64,
}

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Float32 or the float64 oracle.
    pub precision: Precision,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
}

/// Which values to capture besides the outputs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Taps {
    /// None: the fastest plan.
    #[default]
    None,
    /// Every value computed at inference (each node's output, and the input).
    All,
    /// These values, by name.
    Names(Vec<String>),
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The graph's inference outputs (`logits`), by output name.
    pub outputs: Vec<(String, Tensor)>,
    /// Captured values by value name, in graph order.
    pub taps: Vec<(String, Tensor)>,
}

struct Typed<T> {
    weights: Vec<NodeWeights<T>>,
    plan: Plan<T>,
    arena: Mutex<Arena<T>>,
}

enum Engine {
    F32(Typed<f32>),
    F64(Typed<f64>),
}

/// A graph prepared to run: weights converted, plan built, threads started.
pub struct Interpreter {
    graph: Graph,
    needed: Vec<bool>,
    threads: usize,
    pool: rayon::ThreadPool,
    engine: Engine,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("graph", &self.graph.name)
            .field("threads", &self.threads)
            .finish()
    }
}

impl Interpreter {
    /// Prepares `graph` to run. Fails on an invalid graph or unbound weights.
    pub fn new(graph: &Graph, options: &Options) -> Result<Self, InterpError> {
        Self::from_graph(graph.clone(), options)
    }

    /// Like [`Interpreter::new`], taking the graph so that its weights move
    /// into the interpreter instead of being copied (half the peak memory).
    pub fn from_graph(mut graph: Graph, options: &Options) -> Result<Self, InterpError> {
        graph.validate()?;
        if graph.inputs.len() != 1 {
            return Err(InterpError::InputCount(graph.inputs.len()));
        }
        let needed = graph.inference_nodes();
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| InterpError::Threads {
                threads,
                message: e.to_string(),
            })?;
        fn typed<T: Float>(
            graph: &mut Graph,
            needed: &[bool],
            threads: usize,
        ) -> Result<Typed<T>, InterpError> {
            let weights = prepare_weights::<T>(graph, needed)?;
            let plan = build_plan(graph, &weights, needed, &[], threads > 1)?;
            Ok(Typed {
                weights,
                plan,
                arena: Mutex::new(Arena::default()),
            })
        }
        let engine = match options.precision {
            Precision::F32 => Engine::F32(typed(&mut graph, &needed, threads)?),
            Precision::F64 => Engine::F64(typed(&mut graph, &needed, threads)?),
        };
        // Keep the structure only: the weights now live, converted, in the engine.
        for p in &mut graph.params {
            p.data = None;
        }
        Ok(Interpreter {
            graph,
            needed,
            threads,
            pool,
            engine,
        })
    }

    /// The graph being run (its structure; parameter data is not kept).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the graph on `input` (`[N, ...]` with the graph input's other
    /// dimensions), capturing `taps`.
    pub fn run(&self, input: &Tensor, taps: &Taps) -> Result<RunOutput, InterpError> {
        let batch = self.check_input(input)?;
        let tap_ids = self.tap_ids(taps)?;
        match &self.engine {
            Engine::F32(t) => self.run_typed(t, input, batch, &tap_ids),
            Engine::F64(t) => self.run_typed(t, input, batch, &tap_ids),
        }
    }

    fn run_typed<T: Float>(
        &self,
        typed: &Typed<T>,
        input: &Tensor,
        batch: usize,
        taps: &[ValueId],
    ) -> Result<RunOutput, InterpError> {
        let x = T::from_tensor(input);
        let (plan_store, results);
        let plan: &Plan<T> = if taps.is_empty() {
            &typed.plan
        } else {
            plan_store = build_plan(
                &self.graph,
                &typed.weights,
                &self.needed,
                taps,
                self.threads > 1,
            )?;
            &plan_store
        };
        if taps.is_empty() {
            // A poisoned lock only means an earlier run panicked; the arena is rebuilt anyway.
            let mut guard = typed
                .arena
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let arena: &mut Arena<T> = &mut guard;
            results = self.in_pool(|| execute(plan, arena, &x, batch, self.threads, None));
        } else {
            let mut arena = Arena::default();
            results = self.in_pool(|| execute(plan, &mut arena, &x, batch, self.threads, None));
        }
        let mut outputs = Vec::new();
        let mut tapped = Vec::new();
        for (i, ((name, v, _), data)) in plan.results.iter().zip(results).enumerate() {
            let shape = self.graph.values[*v].ty.concrete(batch);
            let t = T::tensor(shape, data).ok_or_else(|| InterpError::UnknownTap(name.clone()))?;
            if i < plan.n_outputs {
                outputs.push((name.clone(), t));
            } else {
                tapped.push((name.clone(), t));
            }
        }
        Ok(RunOutput {
            outputs,
            taps: tapped,
        })
    }

    /// Runs once and returns each step's wall time: `(nodes, op, milliseconds)`,
    /// in execution order (fused nodes share a step, named after the first
    /// node and the others' ops: `Conv2d_2b_3x3.conv+BatchNorm+Relu+MaxPool2d`).
    pub fn profile(&self, input: &Tensor) -> Result<Vec<(String, &'static str, f64)>, InterpError> {
        let batch = self.check_input(input)?;
        fn go<T: Float>(
            it: &Interpreter,
            t: &Typed<T>,
            input: &Tensor,
            batch: usize,
        ) -> Vec<(String, &'static str, f64)> {
            let x = T::from_tensor(input);
            let mut guard = t
                .arena
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let arena: &mut Arena<T> = &mut guard;
            let mut times = Vec::with_capacity(t.plan.steps.len());
            it.in_pool(|| execute(&t.plan, arena, &x, batch, it.threads, Some(&mut times)));
            t.plan
                .step_names
                .iter()
                .zip(times)
                .map(|((n, op), ms)| (n.clone(), *op, ms))
                .collect()
        }
        Ok(match &self.engine {
            Engine::F32(t) => go(self, t, input, batch),
            Engine::F64(t) => go(self, t, input, batch),
        })
    }

    /// Runs `f` in the thread pool with the other workers kept awake.
    ///
    /// A run hands work to the other threads a few hundred times (each
    /// convolution, pooling and epilogue), with short serial stretches in
    /// between. An idle rayon worker soon goes to sleep, and waking it costs
    /// tens of microseconds on a virtual machine — measured here, more than
    /// the work handed over. So for the length of a run, every other worker
    /// polls for pending work (`rayon::yield_now`) instead of sleeping.
    fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.threads < 2 {
            return self.pool.install(f);
        }
        self.pool.install(|| {
            let done = AtomicBool::new(false);
            let main = rayon::current_thread_index();
            rayon::scope(|s| {
                // More pollers than workers: one the main thread takes for
                // itself (while waiting in a join) returns at once, below.
                for _ in 0..2 * (self.threads - 1) {
                    s.spawn(|_| {
                        if rayon::current_thread_index() == main {
                            return;
                        }
                        while !done.load(Ordering::Acquire) {
                            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                                std::hint::spin_loop();
                            }
                        }
                    });
                }
                // Set on drop, so a panic in `f` still releases the pollers
                // and unwinds instead of hanging the scope.
                struct Release<'a>(&'a AtomicBool);
                impl Drop for Release<'_> {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::Release);
                    }
                }
                let _release = Release(&done);
                f()
            })
        })
    }

    fn check_input(&self, input: &Tensor) -> Result<usize, InterpError> {
        if !input.dtype().is_float() {
            return Err(InterpError::InputDtype(input.dtype()));
        }
        let value = &self.graph.values[self.graph.inputs[0]];
        let ty = &value.ty;
        let shape = input.shape();
        let bad = || InterpError::InputShape {
            name: value.name.clone(),
            expected: ty.to_string(),
            found: shape.to_vec(),
        };
        if shape.len() != ty.shape.len() {
            return Err(bad());
        }
        let mut batch = 1;
        for (d, &n) in ty.shape.iter().zip(shape) {
            match d.fixed() {
                Some(f) if f != n => return Err(bad()),
                Some(_) => {}
                None => batch = n,
            }
        }
        if batch == 0 {
            return Err(bad());
        }
        Ok(batch)
    }

    fn tap_ids(&self, taps: &Taps) -> Result<Vec<ValueId>, InterpError> {
        let computed: Vec<bool> = {
            let mut c = vec![false; self.graph.values.len()];
            for &i in &self.graph.inputs {
                c[i] = true;
            }
            for (n, &need) in self.graph.nodes.iter().zip(&self.needed) {
                if need {
                    c[n.output] = true;
                }
            }
            c
        };
        match taps {
            Taps::None => Ok(Vec::new()),
            Taps::All => Ok((0..self.graph.values.len())
                .filter(|&v| computed[v])
                .collect()),
            Taps::Names(names) => names
                .iter()
                .map(|n| {
                    self.graph
                        .value_by_name(n)
                        .filter(|&v| computed[v])
                        .ok_or_else(|| InterpError::UnknownTap(n.clone()))
                })
                .collect(),
        }
    }
}
