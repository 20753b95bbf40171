//! How work is shared between two threads on a machine whose two vCPUs are
//! not always equally available. A neighbour on the host can slow one down
//! for minutes, or another process can share it: with a fixed half each,
//! the faster thread then waits for the slower at every one of a run's
//! hundred or so parallel sections, and a worker descheduled in the middle
//! of its part stalls the run for a whole time slice (a CPU-bound process
//! pinned to one of the two vCPUs made two-thread runs twice as slow as one
//! thread). So two-thread products are split in proportion to the threads'
//! measured speeds, and when the other worker does not come or crawls, the
//! caller works alone for a while before trying again. This changes which
//! thread computes what, never how a value is computed: results do not
//! depend on it.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Call sites with a share of their own (sites wrap around).
const SITES: usize = 512;

/// The caller's share of a two-thread section, in 1/4096ths, per call site:
/// the threads' speeds compare differently from layer to layer (on the
/// stem's the caller was the slower, by 2-5%, on the 35x35 blocks' the
/// faster), and one share for all left a thread waiting 1 ms per run.
static FIRST: [AtomicU32; SITES] = [const { AtomicU32::new(2048) }; SITES];

/// The call site running now (see [`set_site`]).
static SITE: AtomicUsize = AtomicUsize::new(0);

/// Until when (nanoseconds after [`epoch`]) the caller works alone.
static SOLO_UNTIL: AtomicU64 = AtomicU64::new(0);

/// How long the caller works alone after the other worker failed it: about
/// one run, so a busy vCPU costs one stalled section per run, not dozens.
const SOLO: Duration = Duration::from_millis(50);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

thread_local! {
    /// Set while this thread runs a fork side's last step ([`elastic`]).
    static ELASTIC: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, a fork side's last step, so that a kernel that can cuts its
/// work into chunks ([`both_ends`]), which the other thread takes from the
/// back once its own side is done; any other two-thread section in `f`
/// runs on this thread alone. A fork's sides are sized by their MACs, and
/// one thread is often the slower (by 5-15%): without this the faster
/// waited at every fork's end.
pub fn elastic<R>(f: impl FnOnce() -> R) -> R {
    /// Clears the flag however `f` ends.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ELASTIC.with(|e| e.set(false));
        }
    }
    ELASTIC.with(|e| e.set(true));
    let _reset = Reset;
    f()
}

/// True inside [`elastic`].
pub fn is_elastic() -> bool {
    ELASTIC.with(Cell::get)
}

/// Runs `f` on every chunk, the calling thread taking chunks from the front
/// and any thread that comes to help (a finished fork side's, waiting in
/// [`join_helping`]) from the back, until none is left.
pub fn both_ends<C: Send>(chunks: Vec<C>, f: impl Fn(C) + Sync) {
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(chunks));
    let take = |front: bool| {
        queue
            .lock()
            .ok()
            .and_then(|mut q| if front { q.pop_front() } else { q.pop_back() })
    };
    join_spinning(
        || {
            while let Some(c) = take(true) {
                f(c);
            }
        },
        || {
            while let Some(c) = take(false) {
                f(c);
            }
        },
    );
}

/// The threads a parallel section should use now: `requested`, or 1 while
/// the caller works alone or inside [`elastic`].
pub fn threads(requested: usize) -> usize {
    if requested > 1 && (is_elastic() || now_ns() < SOLO_UNTIL.load(Ordering::Relaxed)) {
        1
    } else {
        requested.max(1)
    }
}

/// Names the call site of the sections that follow (the interpreter's step
/// index), so each keeps its own share. Shares only move work between the
/// threads: a site shared by two models, or two runs at once, costs speed,
/// never a result.
pub fn set_site(site: usize) {
    SITE.store(site % SITES, Ordering::Relaxed);
}

fn share() -> &'static AtomicU32 {
    &FIRST[SITE.load(Ordering::Relaxed) % SITES]
}

/// Units (of `units ≥ 2`) for the caller's part: at least one for each.
pub fn first_share(units: usize) -> usize {
    first_share_of(units, f64::from(share().load(Ordering::Relaxed)) / 4096.0)
}

fn first_share_of(units: usize, share: f64) -> usize {
    ((units as f64 * share).round() as usize).clamp(1, units - 1)
}

/// Runs `a` on the calling thread and `b` on the other worker (or on the
/// caller, if the worker does not take it), then records how fast each
/// went for the next split; `wa` and `wb` measure their work.
pub fn join((wa, a): (usize, impl FnOnce() + Send), (wb, b): (usize, impl FnOnce() + Send)) {
    join_timed((wa, a), (wb, b), false);
}

/// [`join`] for a fork's two sides: a thread done with its side helps the
/// other side's last step ([`elastic`]) while it waits.
pub fn join_helping(
    (wa, a): (usize, impl FnOnce() + Send),
    (wb, b): (usize, impl FnOnce() + Send),
) {
    join_timed((wa, a), (wb, b), true);
}

fn join_timed(
    (wa, a): (usize, impl FnOnce() + Send),
    (wb, b): (usize, impl FnOnce() + Send),
    help: bool,
) {
    let start = Instant::now();
    let (ta, (tb, other)) = join_inner(
        || {
            a();
            start.elapsed()
        },
        || {
            b();
            start.elapsed()
        },
        help,
    );
    update(wa, ta, wb, tb, other);
}

/// `rayon::join(a, b)`, and whether another thread ran `b`; a caller done
/// first spins while the other worker finishes `b` ([`wait_for`]).
pub fn join_spinning<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, (RB, bool)) {
    join_inner(a, b, false)
}

fn join_inner<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
    help: bool,
) -> (RA, (RB, bool)) {
    let me = rayon::current_thread_index();
    // `b`: not started, running on the other worker, or done.
    let state = AtomicU8::new(IDLE);
    rayon::join(
        || {
            let ra = a();
            wait_for(&state, help);
            ra
        },
        || {
            let other = rayon::current_thread_index() != me;
            if other {
                state.store(RUNNING, Ordering::Release);
            }
            let rb = b();
            state.store(DONE, Ordering::Release);
            (rb, other)
        },
    )
}

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// Longest the caller spins for the other worker's part before leaving
/// the wait to rayon (a worker descheduled mid-part).
const SPIN: Duration = Duration::from_millis(2);

/// Spins while the other worker runs its part. Left to rayon, a caller
/// that finished first soon slept, and woke 50-100 µs after the other part
/// ended: 0.3-0.6 ms per two-thread run, over its 105 sections.
/// With `help`, it runs pending work instead (the other part's chunks).
fn wait_for(state: &AtomicU8, help: bool) {
    let since = Instant::now();
    let mut spins = 0u32;
    while state.load(Ordering::Acquire) == RUNNING {
        if !help || rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && since.elapsed() > SPIN {
            break;
        }
    }
}

/// Records one two-thread section: `(work, time)` of the caller's part and
/// of the other's (from the common start), and whether another thread ran
/// the second part at all.
fn update(wa: usize, ta: Duration, wb: usize, tb: Duration, other: bool) {
    let old = f64::from(share().load(Ordering::Relaxed)) / 4096.0;
    let next = next_share(old, (wa, ta), (wb, tb), other);
    share().store((next * 4096.0) as u32, Ordering::Relaxed);
    if failed((wa, ta), (wb, tb), other) {
        let until = now_ns().saturating_add(u64::try_from(SOLO.as_nanos()).unwrap_or(0));
        SOLO_UNTIL.store(until, Ordering::Relaxed);
    }
}

/// Work per second.
fn speed((work, time): (usize, Duration)) -> f64 {
    work as f64 / time.as_secs_f64().max(1e-9)
}

/// True when the other worker never came, or ran at under a quarter of the
/// caller's speed (descheduled, not merely slower).
fn failed(a: (usize, Duration), b: (usize, Duration), other: bool) -> bool {
    !other || speed(b) < 0.25 * speed(a)
}

/// The caller's next share: a moving average toward the share that matches
/// the two measured speeds (work per second), within 5%-95%.
fn next_share(old: f64, a: (usize, Duration), b: (usize, Duration), other: bool) -> f64 {
    let target = if other {
        speed(a) / (speed(a) + speed(b))
    } else {
        0.95
    };
    (0.8 * old + 0.2 * target).clamp(0.05, 0.95)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_follows_the_speeds() {
        let ms = Duration::from_millis;
        // The other thread does the same work in three times as long.
        let mut s = 0.5;
        for _ in 0..50 {
            s = next_share(s, (300, ms(1)), (100, ms(1)), true);
        }
        assert!((s - 0.75).abs() < 1e-3, "{s}");
        // It never comes: the caller takes almost everything, not all.
        for _ in 0..50 {
            s = next_share(s, (1, ms(1)), (1, ms(1)), false);
        }
        assert!((s - 0.95).abs() < 1e-4, "{s}");
        // Equal speeds bring it back to halves.
        for _ in 0..80 {
            s = next_share(s, (10, ms(2)), (10, ms(2)), true);
        }
        assert!((s - 0.5).abs() < 1e-3, "{s}");
        assert_eq!(first_share_of(2, 0.95), 1);
        assert_eq!(first_share_of(100, 0.05), 5);
    }

    #[test]
    fn both_ends_runs_every_chunk_once_and_elastic_keeps_the_rest_on_one_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        let done: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
        pool.install(|| {
            both_ends((0..37).collect(), |i: usize| {
                done[i].fetch_add(1, Ordering::Relaxed);
            });
        });
        assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
        assert_eq!(elastic(|| (is_elastic(), threads(2))), (true, 1));
        assert!(!is_elastic(), "the flag is cleared after");
    }

    #[test]
    fn a_worker_that_crawls_or_never_comes_has_failed() {
        let ms = Duration::from_millis;
        assert!(!failed((100, ms(1)), (100, ms(1)), true));
        assert!(
            !failed((100, ms(1)), (100, ms(3)), true),
            "a third of the speed: slower, not gone"
        );
        assert!(failed((100, ms(1)), (100, ms(5)), true));
        assert!(failed((100, ms(1)), (100, ms(1)), false));
    }
}
