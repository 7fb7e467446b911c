//! Everything decided before anything is created: the program and its command line, the
//! environment block, the job's limits, the ACL plan and the description of what the run
//! enforces. Pure, so the decisions are tested without Windows; `launch` then carries them out.

use crate::cmdline;
use crate::envblock;
use crate::error::{ErrorKind, LaunchError};
use crate::install::ACCOUNT_NAME;
use crate::job::JobPlan;
use crate::plan::{self, AclPlan, Kind, Op};
use crate::report::{Enforcement, Layer};
use crate::sid::Sid;
use crate::{acl::mask, wpath};
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
    /// The sandbox account's profile folder.
    pub profile: &'a str,
    /// The loopback ports this run's gateway listens on (none without a gateway).
    pub gateway_ports: &'a [u16],
    /// Variables Windows programs need (the policy's `WINDOWS_KEEP`), added when `env` lacks
    /// them: the caller's environment may have been scrubbed by other rules.
    pub system_env: Vec<(Vec<u16>, Vec<u16>)>,
}

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

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// The profile variables, pointing at the sandbox account's own profile: the caller's is
/// closed to the account, and tools (git's global config, PowerShell, npm, pip) look there.
/// `HOME` too: git prefers it to `USERPROFILE`.
pub fn profile_vars(profile: &str) -> Vec<(Vec<u16>, Vec<u16>)> {
    let (drive, rest) = match profile.as_bytes() {
        [d, b':', ..] if d.is_ascii_alphabetic() => profile.split_at(2),
        _ => ("", profile),
    };
    [
        ("USERPROFILE", profile.to_string()),
        ("HOME", profile.to_string()),
        ("HOMEDRIVE", drive.to_string()),
        ("HOMEPATH", rest.to_string()),
        ("APPDATA", wpath::join(profile, r"AppData\Roaming")),
        ("LOCALAPPDATA", wpath::join(profile, r"AppData\Local")),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(n, v)| (wide(n), wide(&v)))
    .collect()
}

/// `safe.directory` entries for the run's roots, through git's `GIT_CONFIG_COUNT` variables
/// (after any the environment already has): the command runs as the sandbox account, and git
/// refuses repositories owned by someone else ("dubious ownership"), which every repository of
/// the caller is. Each root is trusted as itself and, for git 2.46 and later, with everything
/// below it (`root/*`). Nothing is written to any config file.
pub fn git_safe_directories(env: &[(Vec<u16>, Vec<u16>)], roots: &[String]) -> Vec<(Vec<u16>, Vec<u16>)> {
    let count = envblock::get_var(env, "GIT_CONFIG_COUNT")
        .and_then(|v| String::from_utf16(v).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let values: Vec<String> = roots
        .iter()
        .flat_map(|r| {
            let slashed = r.replace('\\', "/");
            let below = format!("{}/*", slashed.trim_end_matches('/'));
            [slashed, below]
        })
        .collect();
    let mut out = vec![(wide("GIT_CONFIG_COUNT"), wide(&(count + values.len()).to_string()))];
    for (i, value) in values.iter().enumerate() {
        out.push((wide(&format!("GIT_CONFIG_KEY_{}", count + i)), wide("safe.directory")));
        out.push((wide(&format!("GIT_CONFIG_VALUE_{}", count + i)), wide(value)));
    }
    out
}

/// The command's environment: the caller's, the system variables it lacks, the sandbox
/// account's profile, the run's temporary folder, git's `safe.directory` for the roots, and an
/// npm cache in the temporary folder (npm refuses to run without a writable cache, and the
/// profile is read-only to commands) unless the caller chose one.
fn environment(req: &Request<'_>, env: Vec<(Vec<u16>, Vec<u16>)>, roots: &[String]) -> Vec<(Vec<u16>, Vec<u16>)> {
    let mut env = env;
    for (name, value) in &req.system_env {
        if envblock::get_var(&env, &String::from_utf16_lossy(name)).is_none() {
            env.push((name.clone(), value.clone()));
        }
    }
    if envblock::get_var(&env, "npm_config_cache").is_none() {
        env.push((wide("npm_config_cache"), wide(&wpath::join(&req.temp_dir, "npm-cache"))));
    }
    let temp = wide(&req.temp_dir);
    let mut fixed = profile_vars(req.profile);
    fixed.extend([(wide("TEMP"), temp.clone()), (wide("TMP"), temp)]);
    fixed.extend(git_safe_directories(&env, roots));
    envblock::set_vars(&mut env, &fixed);
    env
}

/// What Windows can't enforce for any run: reported with every run, and by `ringfence check`.
pub fn platform_gaps(network: NetworkMode) -> Vec<Layer> {
    let mut out = vec![
        Layer::new(
            "tmp_size",
            "TEMP is a folder on the disk: Windows has no size cap for one folder, so the run's temporary files \
             are limited only by the free space",
        ),
        Layer::new(
            "git review",
            "repositories the command changes are not reviewed after the run; protected paths (.git\\hooks, \
             .git\\config, …) are read-only during it",
        ),
    ];
    if network != NetworkMode::Host {
        out.push(Layer::new(
            "dns",
            "names looked up through the system resolver are sent by the DNS Client service, not by the sandbox \
             account, so the network filters don't see them: a command can leak data in the names it looks up, \
             although it can connect nowhere",
        ));
    }
    out
}

/// How the network is described in `run.start`.
fn network_layer(network: NetworkMode, ports: &[u16]) -> Layer {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    Layer::new(
        "network",
        match network {
            NetworkMode::Allow => format!(
                "through the gateway on 127.0.0.1 port{} {} (HTTP and SOCKS5 proxies), which only this run may \
                 reach; WFP filters on the sandbox account block everything else, other loopback ports, DNS, SMB \
                 and ICMP included",
                if ports.len() == 1 { "" } else { "s" },
                ports.join(" and ")
            ),
            _ => "none: WFP filters on the sandbox account block every connection out, loopback included".into(),
        },
    )
}

/// The layers the run enforces.
fn enforced_layers(req: &Request<'_>, acl: &AclPlan, job: &JobPlan, timeout: Option<Duration>) -> Vec<Layer> {
    let mut enforced = vec![
        Layer::new("account", format!("runs as the local account {ACCOUNT_NAME} ({}), not as the caller", req.account)),
        Layer::new(
            "token",
            "write-restricted: a write must also be granted to this run's logon SID or to the slot of one of its \
             writable roots; the slots of other roots are deny-only; every privilege but bypass-traverse-checking \
             removed",
        ),
        Layer::new("files", acl.summary()),
        job.layer(req.policy.limits.cpus),
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
        network_layer(req.policy.network, req.gateway_ports),
    ];
    if let Some(t) = timeout {
        enforced.push(Layer::new("timeout", format!("the job is killed after {t:?}")));
    }
    enforced
}

fn checked_cwd(cwd: &Path, kind: &dyn Fn(&str) -> Option<Kind>) -> Result<String, LaunchError> {
    let raw = cwd.to_str().ok_or_else(|| {
        LaunchError::policy(format!("the working folder {} is not valid Unicode", cwd.display()), "rename it")
    })?;
    let cwd = wpath::normalize(raw);
    if !cmdline::is_absolute(&cwd) || kind(&cwd) != Some(Kind::Dir) {
        return Err(LaunchError::policy(
            format!("the working folder {cwd} does not exist or is not an absolute path"),
            "run from an existing folder",
        ));
    }
    Ok(cwd)
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
    let cwd = checked_cwd(req.cwd, kind)?;
    let mut acl = plan::plan(&policy.fs, &policy.home, policy.allow_writable_home, kind)?;
    acl.ops.insert(0, Op::Grant { path: req.temp_dir.clone(), this: mask::MODIFY, children: mask::MODIFY });
    let roots: Vec<String> = acl.roots.iter().map(|r| r.path.clone()).collect();
    let mut req = req;
    let caller_env = std::mem::take(&mut req.env);
    let env = environment(&req, caller_env, &roots);
    let env_block = envblock::build_env_block(&env)?;
    let get = |name: &str| envblock::get_var(&env, name).and_then(|v| String::from_utf16(v).ok());
    let program = text(req.program, "program name")?;
    let application =
        cmdline::resolve_program(&program, &cwd, get("PATH").as_deref(), get("PATHEXT").as_deref(), is_file)?;
    let command_line = cmdline::build_command_line(req.program, req.args)?;
    let job = JobPlan::from_limits(&policy.limits, req.logical_cpus)?;
    let timeout = policy.limits.timeout.map(|t| t.0);
    let enforced = enforced_layers(&req, &acl, &job, timeout);
    let mut not_enforced = platform_gaps(policy.network);
    not_enforced.extend(ringfence_backend::exec_rules_not_enforced(policy));
    Ok(Prepared {
        application,
        command_line,
        env_block,
        cwd,
        job,
        acl,
        timeout,
        enforcement: Enforcement { enforced, not_enforced },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fixtures::{account, no_limits, w};
    use ringfence_policy::{Builtin, FsRules, HumanDuration, Limits, ProfileName, RuleKind};
    use std::path::PathBuf;

    fn policy(network: NetworkMode) -> Policy {
        let mut fs = FsRules::default();
        fs.push(RuleKind::Read, PathBuf::from("/"), Builtin::ReadRoot { profile: ProfileName::Workspace });
        fs.push(
            RuleKind::Write,
            PathBuf::from(r"C:\Users\me\proj"),
            Builtin::Workspace { profile: ProfileName::Workspace },
        );
        fs.push(RuleKind::DenyWrite, PathBuf::from(r"C:\Users\me\proj\.git\hooks"), Builtin::ProtectedPath);
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
        run_with_ports(cwd, p, program, args, env, &[])
    }

    fn run_with_ports(
        cwd: &Path,
        p: &Policy,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        gateway_ports: &[u16],
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
                profile: r"C:\Users\ringfence-sandbox",
                gateway_ports,
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
        let prep =
            run_with_ports(Path::new(r"C:\Users\me\proj"), &p, "cmd", &["/d", "/c", "echo a b"], &env, &[50200, 50201])
                .unwrap();
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
        let gaps: Vec<&str> = prep.enforcement.not_enforced.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(gaps, ["tmp_size", "git review", "dns"], "what Windows can't enforce is reported");
        let net = &prep.enforcement.enforced[7].detail;
        assert!(net.contains("ports 50200 and 50201") && net.contains("only this run"), "{net}");
        assert_eq!(prep.acl.roots, vec![crate::grants::RootUse { path: r"C:\Users\me\proj".into(), write: true }]);
    }

    fn env_of(prep: &Prepared) -> Vec<(String, String)> {
        let block = String::from_utf16(&prep.env_block).unwrap();
        block
            .split('\0')
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_profile_is_the_sandbox_accounts_own() {
        let env = [("PATH", r"C:\Windows\System32"), ("USERPROFILE", r"C:\Users\me"), ("HOME", r"C:\Users\me")];
        let prep = run(&policy(NetworkMode::None), "cmd", &[], &env).unwrap();
        let env = env_of(&prep);
        assert_eq!(var(&env, "USERPROFILE"), Some(r"C:\Users\ringfence-sandbox"));
        assert_eq!(var(&env, "HOME"), Some(r"C:\Users\ringfence-sandbox"));
        assert_eq!(var(&env, "HOMEDRIVE"), Some("C:"));
        assert_eq!(var(&env, "HOMEPATH"), Some(r"\Users\ringfence-sandbox"));
        assert_eq!(var(&env, "APPDATA"), Some(r"C:\Users\ringfence-sandbox\AppData\Roaming"));
        assert_eq!(var(&env, "LOCALAPPDATA"), Some(r"C:\Users\ringfence-sandbox\AppData\Local"));
        assert!(!env.iter().any(|(_, v)| v == r"C:\Users\me"), "nothing points at the caller's profile: {env:?}");
        assert_eq!(var(&env, "npm_config_cache"), Some(r"C:\Users\me\AppData\Local\Temp\ringfence-7-1\npm-cache"));
        let chosen = run(
            &policy(NetworkMode::None),
            "cmd",
            &[],
            &[("PATH", r"C:\Windows\System32"), ("NPM_CONFIG_CACHE", r"D:\c")],
        )
        .unwrap();
        assert_eq!(var(&env_of(&chosen), "npm_config_cache"), Some(r"D:\c"), "the caller's choice stays");
    }

    #[test]
    fn git_trusts_the_runs_roots_through_the_environment() {
        let prep = run(&policy(NetworkMode::None), "cmd", &[], &[("PATH", r"C:\Windows\System32")]).unwrap();
        let env = env_of(&prep);
        assert_eq!(var(&env, "GIT_CONFIG_COUNT"), Some("2"));
        assert_eq!(var(&env, "GIT_CONFIG_KEY_0"), Some("safe.directory"));
        assert_eq!(var(&env, "GIT_CONFIG_VALUE_0"), Some("C:/Users/me/proj"));
        assert_eq!(var(&env, "GIT_CONFIG_KEY_1"), Some("safe.directory"));
        assert_eq!(var(&env, "GIT_CONFIG_VALUE_1"), Some("C:/Users/me/proj/*"));
        // Entries the caller passed keep their numbers; ours follow.
        let env = [
            ("PATH", r"C:\Windows\System32"),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "core.autocrlf"),
            ("GIT_CONFIG_VALUE_0", "false"),
        ];
        let env = env_of(&run(&policy(NetworkMode::None), "cmd", &[], &env).unwrap());
        assert_eq!(var(&env, "GIT_CONFIG_COUNT"), Some("3"));
        assert_eq!(var(&env, "GIT_CONFIG_KEY_0"), Some("core.autocrlf"));
        assert_eq!(var(&env, "GIT_CONFIG_VALUE_1"), Some("C:/Users/me/proj"));
        assert_eq!(var(&env, "GIT_CONFIG_VALUE_2"), Some("C:/Users/me/proj/*"));
    }

    #[test]
    fn without_a_gateway_nothing_is_reachable() {
        let prep = run(&policy(NetworkMode::None), "cmd", &[], &[("PATH", r"C:\Windows\System32")]).unwrap();
        let net = &prep.enforcement.enforced[7].detail;
        assert!(net.starts_with("none") && net.contains("loopback included"), "{net}");
        assert!(prep.enforcement.not_enforced.iter().any(|l| l.name == "dns"));
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
