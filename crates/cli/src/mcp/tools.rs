//! The MCP tools: `run_command` and `sandbox_policy`. The server holds the policy it started
//! with; nothing in a request reaches it.

use super::job::{Job, RunCommandParams};
use super::runner::{Runner, Watch};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// When the first progress notification goes out, and how often after that.
const PROGRESS_AFTER: Duration = Duration::from_secs(3);
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What the server was started with.
pub struct Setup {
    pub runner: Box<dyn Runner>,
    pub workspace: PathBuf,
    /// The server's `--timeout`, which caps every command's.
    pub limit: Option<Duration>,
    /// The policy as `ringfence explain` says it.
    pub policy_text: String,
    /// Requests in flight, waited for when the server stops.
    pub tracker: TaskTracker,
    /// Cancelled when the client has gone: every command still running is ended.
    pub shutdown: CancellationToken,
}

#[derive(Clone)]
pub struct Sandbox {
    setup: Arc<Setup>,
}

impl Sandbox {
    pub fn new(setup: Setup) -> Self {
        Sandbox { setup: Arc::new(setup) }
    }
}

#[tool_router]
impl Sandbox {
    /// Runs one command in the sandbox.
    #[tool(
        description = "Run one command in ringfence's sandbox, in the workspace (or a folder inside it): \
                       `command` is a shell command line (sh -c), or `argv` a program and its \
                       arguments. Returns the exit code, duration, stdout and stderr (each cut to its \
                       first and last 16 KiB), and `denials`: what the sandbox refused (network hosts, \
                       files moved aside after the run, limits), each with the flag the person can \
                       restart the server with to allow it. The policy can't be changed from here.",
        annotations(title = "Run a command in the sandbox", open_world_hint = true)
    )]
    async fn run_command(
        &self,
        Parameters(params): Parameters<RunCommandParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let setup = self.setup.clone();
        let job = match Job::new(params, &setup.workspace, setup.limit) {
            Ok(job) => job,
            Err(e) => return Ok(CallToolResult::error(vec![ContentBlock::text(format!("refused: {e}"))])),
        };
        let watch = Watch { cancel: context.ct.clone(), shutdown: setup.shutdown.clone(), ..Watch::default() };
        let work = async {
            let ran = setup.runner.run(job.clone(), watch.clone());
            let ran = report_progress(ran, &context, &watch).await;
            match ran {
                Ok(ran) => Ok(super::report::result(&job, &ran)),
                Err(e) => Err(ErrorData::internal_error(format!("running the command: {e}"), None)),
            }
        };
        setup.tracker.track_future(work).await
    }

    /// The effective policy, as `ringfence explain` prints it.
    #[tool(
        description = "What the sandbox allows: the effective policy, rule by rule, as `ringfence \
                       explain` prints it (readable, writable and hidden paths, network, environment, \
                       limits). It is fixed for this server: to change it, the person restarts the \
                       server with other flags.",
        annotations(title = "The sandbox's policy", read_only_hint = true)
    )]
    async fn sandbox_policy(&self) -> String {
        self.setup.policy_text.clone()
    }
}

/// Awaits `ran`, sending a progress notification every few seconds while it runs, when the
/// client asked for them (a progress token in the request).
async fn report_progress<T>(
    ran: impl std::future::Future<Output = T>,
    context: &RequestContext<RoleServer>,
    watch: &Watch,
) -> T {
    let Some(token) = context.meta.get_progress_token() else { return ran.await };
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_AFTER, PROGRESS_EVERY);
    tokio::pin!(ran);
    loop {
        tokio::select! {
            out = &mut ran => return out,
            _ = ticks.tick() => {
                let elapsed = started.elapsed().as_secs_f64();
                let bytes = watch.output.load(Ordering::Relaxed);
                let mut note = ProgressNotificationParam::new(token.clone(), elapsed.floor());
                note.message = Some(format!("running for {elapsed:.0}s; {bytes} bytes of output so far"));
                let _ = context.peer.notify_progress(note).await;
            }
        }
    }
}

// The instructions a client may give its model about this server.
#[tool_handler(
    name = "ringfence",
    instructions = "Every command runs in ringfence's sandbox, under a policy fixed when \
this server started: run_command runs one command; sandbox_policy says what the sandbox allows. A \
refused network request, a file the review after the run moved aside, or a limit hit is listed in \
the result's `denials`, each with the flag that would allow it: only the person who started the \
server can grant it, by restarting the server with that flag. No argument of these tools can \
widen the policy."
)]
impl ServerHandler for Sandbox {}
