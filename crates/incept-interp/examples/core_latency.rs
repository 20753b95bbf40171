//! The round trip of a cache line between two threads, to tell which state
//! a shared VM's two vCPUs are in before comparing two-thread figures
//! (`cargo run --release -p incept-interp --example core_latency`). On the
//! machines of docs/benchmarks.md it is 75-90 ns most of the time, and
//! about 400 ns in the periods when two-thread runs slow down (incept by
//! 15-20%, onnxruntime by about 12%) while one-thread runs on either vCPU,
//! even two at once, keep their speed: the host then seems to place the
//! vCPUs on different core complexes, and every piece of a layer one thread
//! reads from the other's output crosses between them.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn main() {
    const TRIPS: u64 = 1_000_000;
    let flag = Arc::new(AtomicU64::new(0));
    for _ in 0..3 {
        flag.store(0, Ordering::SeqCst);
        let other = Arc::clone(&flag);
        let echo = std::thread::spawn(move || {
            for i in 0..TRIPS {
                while other.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                other.store(2 * i + 2, Ordering::Release);
            }
        });
        let start = Instant::now();
        for i in 0..TRIPS {
            while flag.load(Ordering::Acquire) != 2 * i {
                std::hint::spin_loop();
            }
            flag.store(2 * i + 1, Ordering::Release);
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / TRIPS as f64;
        if echo.join().is_err() {
            println!("the echo thread panicked");
            return;
        }
        println!("round trip between two threads: {ns:.0} ns");
    }
}
