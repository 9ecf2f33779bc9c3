//! A persistent worker pool for the kernels: workers spin briefly between jobs (a decode step
//! issues hundreds of small jobs) and park on a condition variable when idle, so an idle engine
//! costs no CPU. No allocation per job.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spin iterations before an idle worker parks.
const SPINS_BEFORE_PARK: u32 = 1 << 17;
/// Spin iterations before a waiting thread starts giving its core away between checks: past
/// this, the thread it waits for has likely been descheduled (a busy machine), and spinning on
/// would only keep it off the core.
const SPINS_BEFORE_YIELD: u32 = 1 << 12;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    job: UnsafeCell<Option<Job>>,
    n_tasks: AtomicUsize,
    next_task: AtomicUsize,
    generation: AtomicUsize,
    done: AtomicUsize,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    park: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread holding `Pool::run_lock`, before the generation
// bump that publishes it (Release/Acquire), and read by workers only until they bump `done`,
// which `run` waits for before returning and before the next write.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A fixed set of threads (the caller's thread plus `n_threads - 1` workers).
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    run_lock: Mutex<()>,
    n_threads: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.n_threads)
    }
}

impl Pool {
    /// Starts a pool of `n_threads` (at least 1) including the calling thread.
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            n_tasks: AtomicUsize::new(0),
            next_task: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            park: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..n_threads)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || worker(&s))
            })
            .collect();
        Self { shared, workers, run_lock: Mutex::new(()), n_threads }
    }

    /// Threads that run jobs.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(0..n_tasks)` across the pool and returns when every task has finished.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || n_tasks <= 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _guard = self.run_lock.lock().unwrap_or_else(|p| p.into_inner());
        let s = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function does not return before
        // every worker has stopped using the job (the `done` wait below).
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        // SAFETY: no worker reads `job` between its last `done` bump and the generation bump.
        unsafe { *s.job.get() = Some(job) };
        s.n_tasks.store(n_tasks, SeqCst);
        s.next_task.store(0, SeqCst);
        s.done.store(0, SeqCst);
        s.generation.fetch_add(1, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _p = s.park.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        take_tasks(s, f);
        let mut spins = 0u32;
        while s.done.load(Acquire) < self.workers.len() {
            spins += 1;
            pause(spins);
        }
    }
}

/// One wait step: a CPU spin hint at first, then a yield of the core.
#[inline]
fn pause(spins: u32) {
    if spins < SPINS_BEFORE_YIELD { std::hint::spin_loop() } else { std::thread::yield_now() }
}

fn take_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let n = s.n_tasks.load(Acquire);
    loop {
        let t = s.next_task.fetch_add(1, AcqRel);
        if t >= n {
            break;
        }
        f(t);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        loop {
            if s.shutdown.load(Acquire) {
                return;
            }
            let g = s.generation.load(SeqCst);
            if g != seen {
                seen = g;
                break;
            }
            spins += 1;
            if spins < SPINS_BEFORE_PARK {
                pause(spins);
                continue;
            }
            let mut guard = s.park.lock().unwrap_or_else(|p| p.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            while s.generation.load(SeqCst) == seen && !s.shutdown.load(SeqCst) {
                guard = s.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            s.sleepers.fetch_sub(1, SeqCst);
            spins = 0;
        }
        // SAFETY: published by the generation bump above; valid until we bump `done`.
        if let Some(job) = unsafe { *s.job.get() } {
            // SAFETY: see `Pool::run`: the closure outlives this use.
            take_tasks(s, unsafe { &*job });
        }
        s.done.fetch_add(1, Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        {
            let _p = self.shared.park.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_across_many_jobs() {
        let pool = Pool::new(3);
        for n in [0usize, 1, 2, 7, 64] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(n, &|t| {
                hits[t].fetch_add(1, Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
        }
    }
}
