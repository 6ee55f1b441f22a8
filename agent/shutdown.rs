//! A shutdown signal shared by every task of a running topology.
//!
//! Sources watch it to stop reading; everything downstream ends by itself once its input topic
//! has no producers left and is drained, which is how a shutdown drains in-flight events.

use tokio::sync::watch;

/// Triggers shutdown for every [`Shutdown`] cloned from it.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

/// Tells a task whether, and when, to stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// A new trigger and the signal it controls.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger { sender }, Shutdown { receiver })
}

impl ShutdownTrigger {
    /// Signals shutdown. Idempotent.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Another signal controlled by this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            receiver: self.sender.subscribe(),
        }
    }
}

impl Shutdown {
    /// A signal that never fires, for components run outside a topology (tests, tools).
    pub fn never() -> Self {
        let (sender, receiver) = watch::channel(false);
        // Keep the channel open forever so `wait` never returns.
        std::mem::forget(sender);
        Shutdown { receiver }
    }

    /// Whether shutdown was signalled.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Waits until shutdown is signalled (or its trigger is dropped).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the trigger is gone, which also means stop.
        let _ = receiver.wait_for(|triggered| *triggered).await;
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
    }
}
