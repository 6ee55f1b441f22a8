//! A shutdown signal shared by every task of a running topology.
//!
//! Sources watch it to stop reading; everything downstream ends by itself once its input topic
//! has no producers left and is drained, which is how a shutdown drains in-flight events. A
//! shutdown may carry its deadline (the topology's `shutdown_timeout`), so a source that can
//! still save something at a stop knows how long it has.
//!
//! A task whose work runs on a thread of its own (the file source) outlives its future when the
//! topology gives up and aborts it: the thread still counts what is lost and writes its last
//! checkpoint. It holds a [`Finishing`] guard meanwhile, and the topology waits a moment for
//! those guards ([`ShutdownTrigger::wait_finished`]) before the run summary is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The state a [`Shutdown`] watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Running,
    Stopping { deadline: Option<Instant> },
}

/// Triggers shutdown for every [`Shutdown`] cloned from it.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<Signal>,
    finishing: Arc<AtomicUsize>,
}

/// Tells a task whether, and when, to stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    receiver: watch::Receiver<Signal>,
    finishing: Arc<AtomicUsize>,
}

/// Held by a thread that goes on after its task's future was dropped; see the module doc.
#[derive(Debug)]
pub struct Finishing {
    finishing: Arc<AtomicUsize>,
}

impl Drop for Finishing {
    fn drop(&mut self) {
        self.finishing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A new trigger and the signal it controls.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(Signal::Running);
    let finishing = Arc::new(AtomicUsize::new(0));
    (
        ShutdownTrigger {
            sender,
            finishing: finishing.clone(),
        },
        Shutdown {
            receiver,
            finishing,
        },
    )
}

impl ShutdownTrigger {
    /// Signals shutdown. Idempotent.
    pub fn trigger(&self) {
        self.sender.send_if_modified(|signal| {
            let running = *signal == Signal::Running;
            if running {
                *signal = Signal::Stopping { deadline: None };
            }
            running
        });
    }

    /// Signals shutdown, to be over by `deadline` (when the topology gives up waiting).
    /// Idempotent; a deadline given later replaces none.
    pub fn trigger_by(&self, deadline: Instant) {
        self.sender.send_if_modified(|signal| {
            let unset = matches!(
                signal,
                Signal::Running | Signal::Stopping { deadline: None }
            );
            if unset {
                *signal = Signal::Stopping {
                    deadline: Some(deadline),
                };
            }
            unset
        });
    }

    /// Another signal controlled by this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            receiver: self.sender.subscribe(),
            finishing: self.finishing.clone(),
        }
    }

    /// Waits until no [`Finishing`] guard of this trigger's signals is held, or `timeout`
    /// passed; returns whether none is.
    pub async fn wait_finished(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.finishing.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Shutdown {
    /// A signal that never fires, for components run outside a topology (tests, tools).
    pub fn never() -> Self {
        let (sender, receiver) = watch::channel(Signal::Running);
        // Keep the channel open forever so `wait` never returns.
        std::mem::forget(sender);
        Shutdown {
            receiver,
            finishing: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A guard the trigger's [`ShutdownTrigger::wait_finished`] waits for.
    pub fn finishing(&self) -> Finishing {
        self.finishing.fetch_add(1, Ordering::SeqCst);
        Finishing {
            finishing: self.finishing.clone(),
        }
    }

    /// Whether shutdown was signalled.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow() != Signal::Running
    }

    /// When the shutdown must be over, if it was signalled with a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        match *self.receiver.borrow() {
            Signal::Stopping { deadline } => deadline,
            Signal::Running => None,
        }
    }

    /// Waits until shutdown is signalled (or its trigger is dropped).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the trigger is gone, which also means stop.
        let _ = receiver.wait_for(|signal| *signal != Signal::Running).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_reaches_every_clone() {
        let (trigger, shutdown) = channel();
        let other = shutdown.clone();
        assert!(!shutdown.is_triggered());
        let waiter = tokio::spawn(async move { other.wait().await });
        trigger.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
        assert!(trigger.subscribe().is_triggered());
        assert_eq!(shutdown.deadline(), None);
    }

    #[test]
    fn a_deadline_reaches_every_clone_and_stays() {
        let (trigger, shutdown) = channel();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        trigger.trigger_by(deadline);
        assert!(shutdown.is_triggered());
        assert_eq!(shutdown.clone().deadline(), Some(deadline));
        trigger.trigger();
        trigger.trigger_by(deadline + std::time::Duration::from_secs(1));
        assert_eq!(shutdown.deadline(), Some(deadline));
    }

    #[tokio::test]
    async fn the_trigger_waits_for_finishing_guards() {
        let (trigger, shutdown) = channel();
        let guard = shutdown.clone().finishing();
        assert!(!trigger.wait_finished(Duration::from_millis(20)).await);
        let ended = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(guard);
        });
        assert!(trigger.wait_finished(Duration::from_secs(10)).await);
        ended.await.unwrap();
    }
}
