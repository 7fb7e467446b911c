//! Everything decided before anything is created: the program and its command line, the
//! environment block, the job's limits, the ACL plan and the description of what the run
//! enforces. Pure, so the decisions are tested without Windows; `launch` then carries them out.

use crate::cmdline;
use crate::envblock;
use crate::error::{ErrorKind, LaunchError};
use crate::job::JobPlan;
use crate::plan::{self, AclPlan, Kind, Op};
use crate::report::{Enforcement, Layer};
use crate::sid::Sid;
use crate::{acl::mask, wpath, ACCOUNT_NAME, GATEWAY_PORT_RANGE};
use ringfence_policy::{NetworkMode, Policy};
use std::path::Path;
use std::time::Duration;

/// What `prepare` needs; strings are UTF-16 as Windows has them.
pub struct Request<'a> {
    pub program: &'a [u16],
    pub args: &'a [Vec<u16>],
    pub env: Vec<(Vec<u16>, Vec<u16>)>,
    pub cwd: &'a Path,
    pub policy: &'a Policy,
    pub terminal: bool,
    /// The run's private temporary folder (created at launch).
    pub temp_dir: String,
    pub logical_cpus: u32,
    /// The sandbox account.
    pub account: &'a Sid,
    /// Variables Windows itself needs (see [`SYSTEM_VARS`]), added when `env` lacks them.
    pub system_env: Vec<(Vec<u16>, Vec<u16>)>,
}

/// Variables without which Windows programs misbehave (Winsock fails without `SystemRoot`,
/// shells without `ComSpec` and `PATHEXT`). None is a secret; the caller's environment rules
/// come from Unix-minded lists, so the backend adds these when they are missing.
pub const SYSTEM_VARS: &[&str] = &[
    "SystemRoot",
    "windir",
    "SystemDrive",
    "ComSpec",
    "PATHEXT",
    "OS",
    "NUMBER_OF_PROCESSORS",
    "PROCESSOR_ARCHITECTURE",
];

/// The decisions.
#[derive(Debug)]
pub struct Prepared {
    /// The resolved program.
    pub application: String,
    pub command_line: Vec<u16>,
    pub env_block: Vec<u16>,
    pub cwd: String,
    pub job: JobPlan,
    pub acl: AclPlan,
    pub timeout: Option<Duration>,
    pub enforcement: Enforcement,
}

fn text(units: &[u16], what: &str) -> Result<String, LaunchError> {
    String::from_utf16(units).map_err(|_| {
        LaunchError::policy(format!("the {what} is not valid Unicode"), "use a name Windows can spell in UTF-16")
    })
}

/// Decides everything for one run. `is_file` and `kind` look at the filesystem.
pub fn prepare(
    req: Request<'_>,
    is_file: &dyn Fn(&str) -> bool,
    kind: &dyn Fn(&str) -> Option<Kind>,
) -> Result<Prepared, LaunchError> {
    let policy = req.policy;
    if policy.network == NetworkMode::Host {
        return Err(LaunchError::new(
            ErrorKind::Unsupported,
            "network mode `host` is not available on Windows: the sandbox account's traffic is always filtered",
            Some("use `--network allow` with the hosts the command needs".into()),
        ));
    }
    let cwd_raw = req.cwd.to_str().ok_or_else(|| {
        LaunchError::policy(format!("the working folder {} is not valid Unicode", req.cwd.display()), "rename it")
    })?;
    let cwd = wpath::normalize(cwd_raw);
    if !cmdline::is_absolute(&cwd) || kind(&cwd) != Some(Kind::Dir) {
        return Err(LaunchError::policy(
            format!("the working folder {cwd} does not exist or is not an absolute path"),
            "run from an existing folder",
        ));
    }

    let mut env = req.env;
    for (name, value) in req.system_env {
        if envblock::get_var(&env, &String::from_utf16_lossy(&name)).is_none() {
            env.push((name, value));
        }
    }
    let temp: Vec<u16> = req.temp_dir.encode_utf16().collect();
    envblock::set_vars(
        &mut env,
        &[("TEMP".encode_utf16().collect(), temp.clone()), ("TMP".encode_utf16().collect(), temp)],
    );
    let env_block = envblock::build_env_block(&env)?;
    let get = |name: &str| envblock::get_var(&env, name).and_then(|v| String::from_utf16(v).ok());
    let program = text(req.program, "program name")?;
    let application =
        cmdline::resolve_program(&program, &cwd, get("PATH").as_deref(), get("PATHEXT").as_deref(), is_file)?;
    let command_line = cmdline::build_command_line(req.program, req.args)?;

    let job = JobPlan::from_limits(&policy.limits, req.logical_cpus)?;
    let mut acl = plan::plan(&policy.fs, &policy.home, policy.allow_writable_home, kind)?;
    acl.ops.insert(0, Op::Grant { path: req.temp_dir.clone(), this: mask::MODIFY, children: mask::MODIFY });
    let timeout = policy.limits.timeout.map(|t| t.0);

    let mut enforced = vec![
        Layer::new("account", format!("runs as the local account {ACCOUNT_NAME} ({}), not as the caller", req.account)),
        Layer::new(
            "token",
            "write-restricted: a write must also be granted to this run's logon SID; \
             every privilege but bypass-traverse-checking removed",
        ),
        Layer::new("files", acl.summary()),
        job.layer(policy.limits.cpus),
        Layer::new("desktop", "a private desktop: the command can't reach the user's windows or input"),
        Layer::new(
            "handles",
            if req.terminal {
                "a pseudoconsole only; no other handle is inherited"
            } else {
                "only the three standard streams are inherited (explicit handle list)"
            },
        ),
        Layer::new("temp", format!("TEMP and TMP are a private folder, removed after the run: {}", req.temp_dir)),
    ];
    let ports = format!("{}-{}", GATEWAY_PORT_RANGE.start(), GATEWAY_PORT_RANGE.end());
    enforced.push(Layer::new(
        "network",
        match policy.network {
            NetworkMode::Allow => format!(
                "through the gateway on 127.0.0.1 ports {ports} (HTTP and SOCKS5 proxies); WFP filters on the \
                 sandbox account block everything else, DNS, SMB and ICMP included"
            ),
            _ => format!(
                "none: WFP filters on the sandbox account block everything but loopback ports {ports}, where no \
                 gateway listens for this run"
            ),
        },
    ));
    if let Some(t) = timeout {
        enforced.push(Layer::new("timeout", format!("the job is killed after {t:?}")));
    }
    Ok(Prepared {
        application,
        command_line,
        env_block,
        cwd,
        job,
        acl,
        timeout,
        enforcement: Enforcement { enforced, not_enforced: vec![] },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fixtures::{account, no_limits, w};
    use ringfence_policy::{FsRules, HumanDuration, Limits, Origin, RuleKind};
    use std::path::PathBuf;

    fn policy(network: NetworkMode) -> Policy {
        let mut fs = FsRules::default();
        fs.push(RuleKind::Read, PathBuf::from("/"), Origin::builtin("read root"));
        fs.push(RuleKind::Write, PathBuf::from(r"C:\Users\me\proj"), Origin::builtin("workspace"));
        fs.push(RuleKind::DenyWrite, PathBuf::from(r"C:\Users\me\proj\.git\hooks"), Origin::builtin("protected path"));
        let limits = Limits {
            timeout: Some(HumanDuration(Duration::from_secs(30))),
            pids: Some(ringfence_policy::DEFAULT_PIDS),
            ..no_limits()
        };
        Policy {
            limits,
            network,
            ..crate::fixtures::policy(PathBuf::from(r"C:\Users\me\proj"), PathBuf::from(r"C:\Users\me"), fs)
        }
    }

    #[cfg(windows)]
    pub(crate) fn sample_policy() -> Policy {
        policy(NetworkMode::None)
    }

    fn kind(p: &str) -> Option<Kind> {
        match p.to_ascii_lowercase().as_str() {
            r"c:\users\me\proj" | r"c:\users\me\proj\.git" | r"c:\users\me" | r"c:\" => Some(Kind::Dir),
            _ => None,
        }
    }

    fn is_file(p: &str) -> bool {
        p.eq_ignore_ascii_case(r"C:\Windows\System32\cmd.exe")
    }

    fn run(p: &Policy, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Prepared, LaunchError> {
        run_in(Path::new(r"C:\Users\me\proj"), p, program, args, env)
    }

    fn run_in(
        cwd: &Path,
        p: &Policy,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Prepared, LaunchError> {
        let args: Vec<Vec<u16>> = args.iter().map(|a| w(a)).collect();
        let program = w(program);
        let acct = account();
        prepare(
            Request {
                program: &program,
                args: &args,
                env: env.iter().map(|(n, v)| (w(n), w(v))).collect(),
                cwd,
                policy: p,
                terminal: false,
                temp_dir: r"C:\Users\me\AppData\Local\Temp\ringfence-7-1".into(),
                logical_cpus: 4,
                account: &acct,
                system_env: vec![(w("SystemRoot"), w(r"C:\Windows")), (w("PATH"), w(r"C:\ignored"))],
            },
            &is_file,
            &kind,
        )
    }

    #[test]
    fn decides_program_line_environment_and_plan() {
        let p = policy(NetworkMode::Allow);
        let env = [("Path", r"C:\Windows\System32"), ("temp", r"C:\Users\me\AppData\Local\Temp")];
        let prep = run(&p, "cmd", &["/d", "/c", "echo a b"], &env).unwrap();
        assert_eq!(prep.application, r"C:\Windows\System32\cmd.exe");
        assert_eq!(String::from_utf16(&prep.command_line).unwrap(), r#""cmd" /d /c "echo a b""#);
        let block = String::from_utf16(&prep.env_block).unwrap();
        assert!(block.contains(r"TEMP=C:\Users\me\AppData\Local\Temp\ringfence-7-1"), "{block}");
        assert!(block.contains(r"TMP=C:\Users\me\AppData\Local\Temp\ringfence-7-1"), "{block}");
        assert!(!block.contains(r"temp=C:\Users\me\AppData\Local\Temp"), "the caller's TEMP is replaced");
        assert!(block.contains(r"SystemRoot=C:\Windows"), "a missing system variable is added");
        assert!(!block.contains(r"C:\ignored"), "a variable the caller set is kept as it is");
        assert_eq!(prep.timeout, Some(Duration::from_secs(30)));
        assert_eq!(prep.cwd, r"C:\Users\me\proj");
        // The temp folder's grant comes first, then the plan.
        assert!(matches!(&prep.acl.ops[0], Op::Grant { path, .. } if path.ends_with("ringfence-7-1")));
        assert!(prep.acl.ops.iter().any(|o| matches!(o, Op::Placeholder { path, .. } if path.ends_with("hooks"))));
        let names: Vec<&str> = prep.enforcement.enforced.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["account", "token", "files", "job object", "desktop", "handles", "temp", "network", "timeout"]
        );
        assert!(prep.enforcement.not_enforced.is_empty());
        let net = &prep.enforcement.enforced[7].detail;
        assert!(net.contains("61000-61099") && net.contains("gateway"), "{net}");
    }

    #[test]
    fn host_network_is_refused() {
        let e = run(&policy(NetworkMode::Host), "cmd", &[], &[("PATH", r"C:\Windows\System32")]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.remedy.unwrap().contains("--network allow"));
    }

    #[test]
    fn a_missing_command_is_a_policy_error() {
        let e = run(&policy(NetworkMode::None), "nonexistent", &[], &[("PATH", r"C:\Windows\System32")]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Policy);
        assert!(e.message.starts_with("command not found"));
    }

    #[test]
    fn bad_environment_is_a_policy_error() {
        let e =
            run(&policy(NetworkMode::None), "cmd", &[], &[("PATH", r"C:\Windows\System32"), ("A=B", "x")]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Policy);
    }

    #[test]
    fn a_missing_working_folder_is_refused() {
        let e = run_in(Path::new(r"C:\nowhere"), &policy(NetworkMode::None), "cmd", &[], &[]).unwrap_err();
        assert!(e.message.contains("working folder"));
    }
}
