//! Running a plan: buffers sized for the batch; a batch image by image
//! (images in parallel when there are enough for the threads), one image
//! step by step with the kernels' own threads, except the plan's forks
//! (`fork.rs`), whose two sides run at once, each on one thread.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::float::Float;
use crate::fork::BranchViews;
use crate::kernels::balance;
use crate::kernels::conv::{Weights, conv2d, conv2d_direct, scratch_of};
use crate::kernels::eltwise::Epilogue;
use crate::kernels::linear::linear;
use crate::kernels::pool::{adaptive_avg_pool2d, pool2d};
use crate::plan::{Plan, Slot, Step};

/// Activation memory for one batch size, kept between runs.
#[derive(Debug, Default)]
pub struct Arena<T> {
    batch: usize,
    buffers: Vec<Vec<T>>,
    scratch: Mutex<Vec<Vec<T>>>,
    /// The buffers of the plan's batch tail, for the whole batch (empty
    /// where the tail does not use a buffer).
    tail: Vec<Vec<T>>,
}

impl<T: Float> Arena<T> {
    fn prepare(&mut self, plan: &Plan<T>, batch: usize) {
        if self.batch != batch || self.buffers.len() != plan.buffers.len() {
            self.buffers = plan
                .buffers
                .iter()
                .map(|&n| vec![T::ZERO; n * batch])
                .collect();
            self.batch = batch;
        } else {
            for (b, &n) in self.buffers.iter_mut().zip(&plan.buffers) {
                b.resize(n * batch, T::ZERO);
            }
        }
    }
}

/// One image's part of a slot.
fn image<T>(buf: &[T], s: Slot, n: usize) -> &[T] {
    &buf[n * s.stride + s.offset..n * s.stride + s.offset + s.len]
}

/// Buffer `a` to read and buffer `b` to write (`a != b`).
fn two<T>(buffers: &mut [Vec<T>], a: usize, b: usize) -> (&[T], &mut [T]) {
    if a < b {
        let (x, y) = buffers.split_at_mut(b);
        (&x[a], &mut y[0])
    } else {
        let (x, y) = buffers.split_at_mut(a);
        (&y[0], &mut x[b])
    }
}

/// Applies `f(input_image, output_image, n)` to every image, in parallel over
/// images when `par`. When input and output share a buffer (a concatenation
/// written in place), the input is copied first.
fn per_image<T: Float>(
    buffers: &mut [Vec<T>],
    input: Slot,
    output: Slot,
    batch: usize,
    par: bool,
    f: impl Fn(&[T], &mut [T], usize) + Sync,
) {
    let copied;
    let (src, dst): (&[T], &mut [T]) = if input.buf == output.buf {
        copied = buffers[input.buf].clone();
        (&copied, &mut buffers[output.buf])
    } else {
        two(buffers, input.buf, output.buf)
    };
    let dst = &mut dst[..batch * output.stride];
    let run = |(n, chunk): (usize, &mut [T])| {
        f(
            image(src, input, n),
            &mut chunk[output.offset..output.offset + output.len],
            n,
        );
    };
    if par {
        dst.par_chunks_mut(output.stride).enumerate().for_each(run);
    } else {
        dst.chunks_mut(output.stride).enumerate().for_each(run);
    }
}

/// Runs one step over the whole batch, whose buffers are `buffers`.
#[allow(clippy::too_many_arguments)]
fn run_step<T: Float>(
    step: &Step<T>,
    buffers: &mut [Vec<T>],
    scratch: &Mutex<Vec<Vec<T>>>,
    batch: usize,
    threads: usize,
    par_images: bool,
    gemm_threads: usize,
    timings: Option<&mut Vec<f64>>,
) {
    let started = timings.as_ref().map(|_| std::time::Instant::now());
    match step {
        Step::Conv { input, output, .. }
        | Step::Channel { input, output, .. }
        | Step::Pool { input, output, .. }
        | Step::Adaptive { input, output, .. } => {
            per_image(buffers, *input, *output, batch, par_images, |x, y, _| {
                image_step(step, x, y, scratch, gemm_threads);
            });
        }
        Step::Linear {
            weight,
            bias,
            in_features,
            out_features,
            input,
            output,
        } => {
            let src = &buffers[input.buf];
            let mut x = Vec::with_capacity(batch * in_features);
            for n in 0..batch {
                x.extend_from_slice(image(src, *input, n));
            }
            let mut y = vec![T::ZERO; batch * out_features];
            linear(
                weight,
                bias.as_deref(),
                *in_features,
                *out_features,
                &x,
                &mut y,
                batch,
                threads,
            );
            let dst = &mut buffers[output.buf];
            for n in 0..batch {
                dst[n * output.stride + output.offset..][..*out_features]
                    .copy_from_slice(&y[n * out_features..(n + 1) * out_features]);
            }
        }
        Step::Copy { parts } => {
            for (from, to) in parts {
                per_image(buffers, *from, *to, batch, false, |x, y, _| {
                    y.copy_from_slice(x)
                });
            }
        }
    }
    if let (Some(t), Some(start)) = (timings, started) {
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
}

/// One image of a step that reads and writes one slot (see [`Step::io`]).
fn image_step<T: Float>(
    step: &Step<T>,
    x: &[T],
    y: &mut [T],
    scratch: &Mutex<Vec<Vec<T>>>,
    threads: usize,
) {
    match step {
        Step::Conv {
            geom,
            weight,
            packed,
            direct,
            epilogue,
            pool,
            avg_pool,
            layout,
            ..
        } => {
            // Scratch outlives the step: im2col buffers are reused across layers and runs.
            let take = || {
                scratch
                    .lock()
                    .map(|mut p| p.pop().unwrap_or_default())
                    .unwrap_or_default()
            };
            let mut s = take();
            let w = match (direct, packed) {
                (Some(d), _) => Weights::Direct(d),
                (None, Some(p)) => Weights::Packed(p),
                (None, None) => Weights::Plain(weight),
            };
            let mut raw = avg_pool.as_ref().map(|_| take());
            let (conv_out, conv_epilogue) = match raw.as_mut() {
                Some(r) => (scratch_of(r, y.len()), &Epilogue::none()),
                None => (&mut *y, epilogue),
            };
            match direct {
                Some(d) => {
                    let p = pool.as_deref();
                    conv2d_direct(
                        geom,
                        p,
                        x,
                        d,
                        conv_epilogue,
                        conv_out,
                        &mut s,
                        threads,
                        *layout,
                    );
                }
                None => conv2d(geom, x, w, conv_epilogue, conv_out, &mut s, threads),
            }
            if let (Some(p), Some(r)) = (avg_pool.as_deref(), raw.as_ref()) {
                pool2d(p, &r[..y.len()], y, threads);
                epilogue.apply(y, geom.oh * geom.ow, threads);
            }
            if let Ok(mut p) = scratch.lock() {
                p.push(s);
                p.extend(raw);
            }
        }
        Step::Channel {
            epilogue, plane, ..
        } => {
            y.copy_from_slice(x);
            epilogue.apply(y, *plane, 1);
        }
        Step::Pool { geom, .. } => pool2d(geom, x, y, threads),
        Step::Adaptive { c, hw, ohw, .. } => adaptive_avg_pool2d(*c, *hw, *ohw, x, y),
        Step::Linear { .. } | Step::Copy { .. } => {
            unreachable!("image_step: Linear and Copy read no single slot")
        }
    }
}

/// One image's buffers as a sequence of steps sees them: a slot to read and
/// a slot to write at a time.
pub(crate) trait ImageViews<T> {
    /// Calls `f(input, output)` on the views of two slots; when they share
    /// storage (a concatenation written in place), the input is copied.
    fn with_slots(&mut self, from: Slot, to: Slot, f: impl FnOnce(&[T], &mut [T]));
}

/// One image's part of every buffer (`views[b]` for buffer `b`).
impl<T: Copy> ImageViews<T> for [&mut [T]] {
    fn with_slots(&mut self, from: Slot, to: Slot, f: impl FnOnce(&[T], &mut [T])) {
        let src = from.offset..from.offset + from.len;
        let dst = to.offset..to.offset + to.len;
        if from.buf == to.buf {
            let copied = self[from.buf][src].to_vec();
            f(&copied, &mut self[to.buf][dst]);
        } else if from.buf < to.buf {
            let (a, b) = self.split_at_mut(to.buf);
            f(&a[from.buf][src], &mut b[0][dst]);
        } else {
            let (a, b) = self.split_at_mut(from.buf);
            f(&b[0][src], &mut a[to.buf][dst]);
        }
    }
}

/// Runs `steps` (the plan's steps from index `first` on) on one image
/// whose buffers `views` holds. Image-major order keeps an image's
/// activations in L2 from one step to the next, where step-major order
/// over a batch evicts them.
fn run_image<T: Float, V: ImageViews<T> + ?Sized>(
    steps: &[Step<T>],
    first: usize,
    views: &mut V,
    scratch: &Mutex<Vec<Vec<T>>>,
    threads: usize,
) {
    for (i, step) in steps.iter().enumerate() {
        balance::set_site(first + i);
        match step {
            Step::Linear {
                weight,
                bias,
                in_features,
                out_features,
                input,
                output,
            } => views.with_slots(*input, *output, |x, y| {
                linear(
                    weight,
                    bias.as_deref(),
                    *in_features,
                    *out_features,
                    x,
                    y,
                    1,
                    threads,
                );
            }),
            Step::Copy { parts } => {
                for (from, to) in parts {
                    views.with_slots(*from, *to, |x, y| y.copy_from_slice(x));
                }
            }
            _ => {
                if let Some((input, output)) = step.io() {
                    views.with_slots(input, output, |x, y| {
                        image_step(step, x, y, scratch, threads)
                    });
                }
            }
        }
    }
}

/// Runs one side of a fork (`steps`, from the plan's step `first` on) on
/// the calling thread; the other thread, once done with its own side, may
/// help with the last step ([`balance::elastic`]).
fn run_side<T: Float>(
    steps: &[Step<T>],
    first: usize,
    views: &mut BranchViews<'_, T>,
    scratch: &Mutex<Vec<Vec<T>>>,
) {
    let Some((last, rest)) = steps.split_last() else {
        return;
    };
    run_image(rest, first, views, scratch, 1);
    balance::elastic(|| {
        run_image(
            std::slice::from_ref(last),
            first + rest.len(),
            views,
            scratch,
            2,
        )
    });
}

/// Runs `steps` (`plan`'s first steps) on one image as [`run_image`]
/// does, but the plan's forks among them, when two threads are at hand,
/// with each side on a thread of its own (one-thread kernels).
fn run_forked<T: Float>(
    plan: &Plan<T>,
    steps: &[Step<T>],
    views: &mut [&mut [T]],
    scratch: &Mutex<Vec<Vec<T>>>,
    threads: usize,
) {
    let mut at = 0;
    for (i, fork) in plan.forks.iter().enumerate() {
        if fork.end > steps.len() {
            break;
        }
        run_image(&steps[at..fork.start], at, views, scratch, threads);
        at = fork.start;
        // A vCPU the caller works without for now (`balance`) runs no side.
        if balance::threads(threads) < 2 {
            continue;
        }
        let [mut a, mut b] = BranchViews::split(views, fork);
        let (first, second) = (&steps[fork.start..fork.mid], &steps[fork.mid..fork.end]);
        // The sides name their steps' sites as they go; each names the
        // fork's own (after the plan's steps) when done, so that the join
        // records the two threads' speeds there, not on a step's.
        let site = plan.steps.len() + i;
        balance::join_helping(
            (fork.work[0], || {
                run_side(first, fork.start, &mut a, scratch);
                balance::set_site(site);
            }),
            (fork.work[1], || {
                run_side(second, fork.mid, &mut b, scratch);
                balance::set_site(site);
            }),
        );
        at = fork.end;
    }
    run_image(&steps[at..], at, views, scratch, threads);
}

/// Runs `plan` on `input` (`batch` images, contiguous) and returns every
/// result slot's data, contiguous per result.
pub fn execute<T: Float>(
    plan: &Plan<T>,
    arena: &mut Arena<T>,
    input: &[T],
    batch: usize,
    threads: usize,
    timings: Option<&mut Vec<f64>>,
) -> Vec<Vec<T>> {
    // Images in parallel (each GEMM on one thread) when there are enough of
    // them; otherwise one image at a time with a multi-threaded GEMM.
    let par_images = threads > 1 && batch >= threads;
    if batch > 1 && timings.is_none() {
        let lanes = if par_images { threads.min(batch) } else { 1 };
        return run_lanes(plan, arena, input, batch, lanes, threads);
    }
    arena.prepare(plan, batch);
    let in_slot = plan.input;
    {
        let buf = &mut arena.buffers[in_slot.buf];
        for n in 0..batch {
            let dst = n * in_slot.stride + in_slot.offset;
            buf[dst..dst + in_slot.len]
                .copy_from_slice(&input[n * in_slot.len..(n + 1) * in_slot.len]);
        }
    }
    let Arena {
        buffers, scratch, ..
    } = &mut *arena;
    if timings.is_none() && batch == 1 {
        let mut views: Vec<&mut [T]> = buffers.iter_mut().map(|b| &mut b[..]).collect();
        run_forked(plan, &plan.steps, &mut views, scratch, threads);
    } else {
        run_steps(&plan.steps, 0, buffers, scratch, batch, threads, timings);
    }
    plan.results
        .iter()
        .map(|(_, _, s)| {
            let buf = &arena.buffers[s.buf];
            let mut out = Vec::with_capacity(s.len * batch);
            for n in 0..batch {
                out.extend_from_slice(image(buf, *s, n));
            }
            out
        })
        .collect()
}

/// Image-major execution of a batch: each image runs the steps before the
/// plan's batch tail through one lane's buffers (one lane per thread when
/// images run in parallel, else one), its input copied in first and its
/// results and the tail's inputs copied out after. Those steps then cost
/// what as many single images do: buffers for all its images would spread
/// each step's activations over the whole batch's memory and miss in cache
/// and TLB. Lanes take the next image as they free up, so a slower thread
/// does fewer. The tail then runs step-major over the whole batch with all
/// the threads (`BatchTail`).
fn run_lanes<T: Float>(
    plan: &Plan<T>,
    arena: &mut Arena<T>,
    input: &[T],
    batch: usize,
    lanes: usize,
    threads: usize,
) -> Vec<Vec<T>> {
    arena.prepare(plan, lanes);
    let tail = &plan.tail;
    let has_tail = tail.exists();
    if has_tail {
        arena.tail.resize_with(tail.strides.len(), Vec::new);
        for (buf, &len) in arena.tail.iter_mut().zip(&tail.strides) {
            buf.resize(len * batch, T::ZERO);
        }
    }
    let in_slot = plan.input;
    let mut results: Vec<Vec<T>> = plan
        .results
        .iter()
        .map(|(_, _, s)| vec![T::ZERO; s.len * batch])
        .collect();
    let Arena {
        buffers,
        scratch,
        tail: tail_buffers,
        ..
    } = &mut *arena;
    let scratch: &Mutex<Vec<Vec<T>>> = scratch;
    // Per image, what the lane that runs it fills: its part of each result
    // the head produces, and of each of the tail's buffers.
    let mut per_image: Vec<ImageParts<'_, T>> = (0..batch)
        .map(|_| ImageParts {
            results: Vec::new(),
            tail: Vec::new(),
        })
        .collect();
    for ((r, (_, _, s)), &from_tail) in results.iter_mut().zip(&plan.results).zip(&tail.from_tail) {
        if !from_tail {
            for (p, chunk) in per_image.iter_mut().zip(split(r, s.len, batch)) {
                p.results.push(chunk);
            }
        }
    }
    for (buf, &len) in tail_buffers.iter_mut().zip(&tail.strides) {
        for (p, chunk) in per_image.iter_mut().zip(split(buf, len, batch)) {
            p.tail.push(chunk);
        }
    }
    let per_image: Vec<Mutex<ImageParts<'_, T>>> = per_image.into_iter().map(Mutex::new).collect();
    let mut views: Vec<Vec<&mut [T]>> = (0..lanes).map(|_| Vec::new()).collect();
    for (buf, &len) in buffers.iter_mut().zip(&plan.buffers) {
        for (v, chunk) in views.iter_mut().zip(split(buf, len, lanes)) {
            v.push(chunk);
        }
    }
    let head = &plan.steps[..tail.start];
    let head_results: Vec<Slot> = plan
        .results
        .iter()
        .zip(&tail.from_tail)
        .filter(|(_, t)| !**t)
        .map(|((_, _, s), _)| *s)
        .collect();
    let gemm_threads = if lanes > 1 { 1 } else { threads };
    let next = AtomicUsize::new(0);
    let lane = |v: &mut Vec<&mut [T]>| loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= batch {
            break;
        }
        v[in_slot.buf][in_slot.offset..in_slot.offset + in_slot.len]
            .copy_from_slice(&input[n * in_slot.len..(n + 1) * in_slot.len]);
        // The batch's last image runs as one image on all the threads: the
        // lanes still busy join it as they finish (they take the parts its
        // kernels and forks offer; until then it runs alone, `balance`'s
        // solo mode), where they sat idle before while it ran on one. In
        // one process, alternating runs, two threads: batch 3 0.897, batch
        // 8 0.988-1.006 (median 0.994; the lanes' last images end closer
        // together).
        let t = if lanes > 1 && n + 1 == batch {
            threads
        } else {
            gemm_threads
        };
        run_forked(plan, head, v, scratch, t);
        if let Ok(mut parts) = per_image[n].lock() {
            let ImageParts {
                results,
                tail: into,
            } = &mut *parts;
            for (out, s) in results.iter_mut().zip(&head_results) {
                out.copy_from_slice(&v[s.buf][s.offset..s.offset + s.len]);
            }
            for s in &tail.live_in {
                into[s.buf][s.offset..s.offset + s.len]
                    .copy_from_slice(&v[s.buf][s.offset..s.offset + s.len]);
            }
        }
    };
    if lanes > 1 {
        views.par_iter_mut().for_each(lane);
    } else {
        views.iter_mut().for_each(lane);
    }
    drop(per_image);
    if has_tail {
        let steps = &tail.steps;
        run_steps(
            steps,
            tail.start,
            tail_buffers,
            scratch,
            batch,
            threads,
            None,
        );
        for ((out, (_, _, s)), &from_tail) in
            results.iter_mut().zip(&plan.results).zip(&tail.from_tail)
        {
            if from_tail {
                let s = tail.slot(*s);
                for (n, chunk) in split(out, s.len, batch).into_iter().enumerate() {
                    chunk.copy_from_slice(image(&tail_buffers[s.buf], s, n));
                }
            }
        }
    }
    results
}

/// One image's share of a batch run by lanes (see [`run_lanes`]).
struct ImageParts<'a, T> {
    /// Its part of each result the steps before the tail produce.
    results: Vec<&'a mut [T]>,
    /// Its part of each of the tail's buffers (empty where the tail uses none).
    tail: Vec<&'a mut [T]>,
}

/// `count` consecutive parts of `len` elements at the start of `buf` (empty
/// ones once `buf` runs out).
fn split<T>(buf: &mut [T], len: usize, count: usize) -> Vec<&mut [T]> {
    let mut rest = buf;
    (0..count)
        .map(|_| {
            let at = len.min(rest.len());
            let (mine, more) = std::mem::take(&mut rest).split_at_mut(at);
            rest = more;
            mine
        })
        .collect()
}

/// Step-major execution: each step over the whole batch (one image,
/// profiling, which times steps one by one, or a batch's tail). `first` is
/// the index of `steps[0]` in the plan.
#[allow(clippy::too_many_arguments)]
fn run_steps<T: Float>(
    steps: &[Step<T>],
    first: usize,
    buffers: &mut [Vec<T>],
    scratch: &Mutex<Vec<Vec<T>>>,
    batch: usize,
    threads: usize,
    mut timings: Option<&mut Vec<f64>>,
) {
    let par_images = threads > 1 && batch >= threads;
    let gemm_threads = if par_images { 1 } else { threads };
    for (i, step) in steps.iter().enumerate() {
        balance::set_site(first + i);
        run_step(
            step,
            buffers,
            scratch,
            batch,
            threads,
            par_images,
            gemm_threads,
            timings.as_deref_mut(),
        );
    }
}
