//! The local stack for synchronous callers (the `migrate` tests): a
//! [`Stack`] drives [`crate::Stack`] on a runtime of its own. Its clones
//! share one stack, so a handle on one of its processes can stop it; the
//! processes are killed when the last clone is dropped.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::{Binaries, Options};

/// The running stack; see the module's doc. Not for use inside an async
/// runtime: each call blocks on the stack's own.
#[derive(Clone)]
pub struct Stack {
    shared: Arc<Shared>,
}

struct Shared {
    stack: Mutex<crate::Stack>,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let stack = self.stack.get_mut().unwrap_or_else(|e| e.into_inner());
        // Inside another runtime (a panic unwinding through one) the
        // processes are still killed, by `kill_on_drop`, just not reaped here.
        if tokio::runtime::Handle::try_current().is_err() {
            self.runtime.block_on(stack.kill());
        }
    }
}

impl Stack {
    /// [`crate::Stack::start`], blocking.
    pub fn start(binaries: Binaries, dir: &Path, options: Options) -> anyhow::Result<Stack> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stack = runtime.block_on(crate::Stack::start(binaries, dir, options))?;
        Ok(Stack {
            shared: Arc::new(Shared {
                stack: Mutex::new(stack),
                runtime,
            }),
        })
    }

    /// The stack itself, for what needs no waiting (addresses, files).
    pub fn get(&self) -> MutexGuard<'_, crate::Stack> {
        self.shared.stack.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`crate::Stack::wait_healthy`], blocking, without progress reports.
    pub fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let stack = self.get();
        self.shared
            .runtime
            .block_on(stack.wait_healthy(timeout, |_| {}))
    }

    /// SIGKILLs the local ALB.
    pub fn kill_alb(&self) {
        let mut stack = self.get();
        self.shared.runtime.block_on(stack.kill_alb());
    }

    /// Starts the local ALB again, same state directory, same addresses.
    pub fn restart_alb(&self) -> anyhow::Result<()> {
        let mut stack = self.get();
        self.shared.runtime.block_on(stack.restart_alb())
    }

    /// SIGKILLs a forum server.
    pub fn kill_server(&self, name: &str) {
        let mut stack = self.get();
        self.shared.runtime.block_on(stack.kill_server(name));
    }

    /// Starts a killed forum server again on its port.
    pub fn restart_server(&self, name: &str) -> anyhow::Result<()> {
        let mut stack = self.get();
        self.shared.runtime.block_on(stack.restart_server(name))
    }
}
