//! Threads that run a flush round's fsyncs beside the flusher thread.
//!
//! A round with several partitions fsyncs their files at the same time: the disk serves
//! concurrent flushes together (8 partitions under acks=all: about 1.5x the records/s of
//! fsyncing them one after another). The threads live as long as the flusher, so a
//! round pays a wake-up per thread rather than a thread creation.

use std::sync::mpsc::{channel, Sender};

/// A task run by the pool: its result goes back to the round that queued it.
pub(crate) type Task<T> = Box<dyn FnOnce() -> T + Send>;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads, each with its own queue, so that a round wakes them all at
/// once instead of one after another.
pub(crate) struct FsyncPool {
    workers: Vec<Sender<Job>>,
}

impl FsyncPool {
    /// Starts up to `threads` threads; one the OS refuses is left out, and with none at
    /// all [`Self::run`] runs everything on the caller's thread.
    pub(crate) fn start(threads: usize) -> FsyncPool {
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (jobs, queue) = channel::<Job>();
            let started = std::thread::Builder::new()
                .name(format!("runnel-fsync-{i}"))
                .spawn(move || {
                    // Ends when the pool (the only sender) is dropped.
                    while let Ok(job) = queue.recv() {
                        job();
                    }
                });
            match started {
                Ok(_) => workers.push(jobs),
                Err(e) => tracing::warn!(error = %e, "cannot start an fsync thread"),
            }
        }
        FsyncPool { workers }
    }

    /// Runs every task and returns their results in order: `None` for a task that
    /// panicked. Tasks are dealt round-robin to the caller and the threads, the caller
    /// first (a single task never leaves its thread); it runs its share while the
    /// others run theirs.
    pub(crate) fn run<T: Send + 'static>(&self, tasks: Vec<Task<T>>) -> Vec<Option<T>> {
        let count = tasks.len();
        let (done, results) = channel::<(usize, T)>();
        let slots = self.workers.len() + 1;
        let mut own = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            let done = done.clone();
            let job: Job = Box::new(move || {
                // A panic is reported as a missing result; the thread goes on.
                if let Ok(result) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)) {
                    let _ = done.send((i, result));
                }
            });
            // Slot 0 is the caller's.
            match (i % slots).checked_sub(1).and_then(|w| self.workers.get(w)) {
                // A worker that is gone hands the job back: the caller runs it.
                Some(worker) => {
                    if let Err(returned) = worker.send(job) {
                        own.push(returned.0);
                    }
                }
                None => own.push(job),
            }
        }
        drop(done);
        for job in own {
            job();
        }
        let mut out: Vec<Option<T>> = (0..count).map(|_| None).collect();
        // Ends early once every sender is gone: a task that panicked sent nothing.
        for (i, result) in results.iter().take(count) {
            out[i] = Some(result);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn runs_every_task_concurrently_and_keeps_the_order() {
        let pool = FsyncPool::start(3);
        // All four slots (three threads and the caller) must be inside a task at once
        // for any of them to pass the barrier.
        let barrier = Arc::new(Barrier::new(4));
        let tasks: Vec<Task<usize>> = (0..4usize)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                Box::new(move || {
                    barrier.wait();
                    i * 10
                }) as Task<usize>
            })
            .collect();
        assert_eq!(pool.run(tasks), [Some(0), Some(10), Some(20), Some(30)]);
        // More tasks than slots, twice over.
        let tasks: Vec<Task<usize>> = (0..9usize)
            .map(|i| Box::new(move || i) as Task<usize>)
            .collect();
        assert_eq!(pool.run(tasks), (0..9usize).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_task_is_reported_and_the_caller_goes_on() {
        let pool = FsyncPool::start(2);
        // Tasks 1 and 2 run on the threads, tasks 0 and 3 on the caller.
        let tasks: Vec<Task<u8>> = vec![
            Box::new(|| 0),
            Box::new(|| panic!("an fsync task failed")),
            Box::new(|| panic!("an fsync task failed")),
            Box::new(|| 3),
        ];
        assert_eq!(pool.run(tasks), [Some(0), None, None, Some(3)]);
        // Every thread is still there.
        let tasks: Vec<Task<u8>> = (0..6u8).map(|i| Box::new(move || i) as Task<u8>).collect();
        assert_eq!(pool.run(tasks), (0..6u8).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn without_threads_the_caller_runs_everything() {
        let pool = FsyncPool {
            workers: Vec::new(),
        };
        let tasks: Vec<Task<u8>> = (0..3u8).map(|i| Box::new(move || i) as Task<u8>).collect();
        assert_eq!(pool.run(tasks), [Some(0), Some(1), Some(2)]);
    }
}
