//! Precedence of flags, environment and contexts; reading the token and
//! certificate files.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;
use crate::contexts::{AbsPath, Context, ContextName};

fn url(text: &str) -> HostUrl {
    HostUrl::parse(text).unwrap()
}

fn abs(p: &str) -> Option<AbsPath> {
    Some(AbsPath::new(PathBuf::from(p)).unwrap())
}

/// Two contexts, `prod` current.
fn file() -> Contexts {
    let mut c = Contexts::default();
    c.contexts.insert(
        ContextName::new("prod").unwrap(),
        Context {
            host: url("https://prod.example:7070"),
            token_file: abs("/keys/prod.token"),
            ca_cert: abs("/keys/ca.pem"),
            client_cert: abs("/keys/me.pem"),
            client_key: abs("/keys/me.key"),
        },
    );
    c.contexts.insert(
        ContextName::new("lab").unwrap(),
        Context {
            host: url("http://127.0.0.1:7070"),
            token_file: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
        },
    );
    c.current = Some(ContextName::new("prod").unwrap());
    c
}

fn loader(c: Contexts) -> impl FnOnce() -> anyhow::Result<(Contexts, PathBuf)> {
    move || Ok((c, PathBuf::from("/cfg/contexts.yaml")))
}

fn never() -> anyhow::Result<(Contexts, PathBuf)> {
    panic!("the contexts file was read although a host was given")
}

fn plan(choice: Choice) -> Plan {
    match choice {
        Choice::Remote(plan) => *plan,
        Choice::Local => panic!("expected a remote daemon"),
    }
}

fn usage(result: anyhow::Result<Choice>) -> String {
    let err = result.expect_err("expected a usage error");
    assert!(err.is::<UsageError>(), "not a usage error: {err}");
    err.to_string()
}

fn file_token(path: &str, via: &str) -> Option<TokenFrom> {
    Some(TokenFrom::File {
        path: PathBuf::from(path),
        via: via.into(),
    })
}

#[test]
fn nothing_set_is_the_local_socket() {
    let choice = choose(
        &RemoteArgs::default(),
        &Env::default(),
        loader(Contexts::default()),
    );
    assert_eq!(choice.unwrap(), Choice::Local);
    // PMD_TOKEN alone changes nothing: no host, no context.
    let env = Env {
        token: Some(Secret("pmd_x".into())),
        ca_cert: Some("/ca.pem".into()),
        ..Env::default()
    };
    let choice = choose(&RemoteArgs::default(), &env, loader(Contexts::default()));
    assert_eq!(choice.unwrap(), Choice::Local);
}

#[test]
fn the_flag_beats_the_environment_and_takes_no_context_files() {
    let flags = RemoteArgs {
        host: Some(url("https://flag.example:1")),
        ..RemoteArgs::default()
    };
    let env = Env {
        host: Some("https://env.example:2".into()),
        token_file: Some("/env.token".into()),
        ca_cert: Some("/env-ca.pem".into()),
        context: Some("prod".into()),
        ..Env::default()
    };
    let p = plan(choose(&flags, &env, never).unwrap());
    assert_eq!(p.url, url("https://flag.example:1"));
    assert_eq!(p.origin, Origin::Flag);
    assert_eq!(p.token, file_token("/env.token", TOKEN_FILE_ENV));
    assert_eq!(p.ca_cert.unwrap().path, PathBuf::from("/env-ca.pem"));
    assert_eq!(p.identity, None);
    // A flag file beats its variable.
    let flags = RemoteArgs {
        token_file: Some("/flag.token".into()),
        ..flags
    };
    let p = plan(choose(&flags, &env, never).unwrap());
    assert_eq!(p.token, file_token("/flag.token", "--token-file"));
}

#[test]
fn the_environment_beats_contexts() {
    let env = Env {
        host: Some("env.example:2".into()),
        token: Some(Secret("pmd_secret".into())),
        ..Env::default()
    };
    let flags = RemoteArgs {
        context: Some("prod".into()),
        ..RemoteArgs::default()
    };
    let p = plan(choose(&flags, &env, never).unwrap());
    assert_eq!(p.url, url("https://env.example:2"));
    assert_eq!(p.origin, Origin::Env);
    assert_eq!(p.token, Some(TokenFrom::Env(Secret("pmd_secret".into()))));
    // The current context's token is for its host, not this one.
    let env = Env {
        host: Some("env.example:2".into()),
        ..Env::default()
    };
    let p = plan(choose(&RemoteArgs::default(), &env, never).unwrap());
    assert_eq!(p.token, None);
    assert_eq!(p.ca_cert, None);
}

#[test]
fn a_named_context_beats_the_current_one_and_flags_beat_its_files() {
    let flags = RemoteArgs {
        context: Some("lab".into()),
        ..RemoteArgs::default()
    };
    let p = plan(choose(&flags, &Env::default(), loader(file())).unwrap());
    assert_eq!(p.url, url("http://127.0.0.1:7070"));
    assert_eq!(
        p.origin,
        Origin::Context {
            name: "lab".into(),
            current: false
        }
    );
    // PMD_CONTEXT names one too, below --context.
    let env = Env {
        context: Some("lab".into()),
        ..Env::default()
    };
    let p = plan(choose(&RemoteArgs::default(), &env, loader(file())).unwrap());
    assert_eq!(p.url, url("http://127.0.0.1:7070"));
    // The current context, with its files.
    let p = plan(choose(&RemoteArgs::default(), &Env::default(), loader(file())).unwrap());
    assert_eq!(p.url, url("https://prod.example:7070"));
    assert_eq!(
        p.origin,
        Origin::Context {
            name: "prod".into(),
            current: true
        }
    );
    assert_eq!(
        p.token,
        file_token("/keys/prod.token", "the current context (prod)")
    );
    assert_eq!(
        p.ca_cert.as_ref().unwrap().path,
        PathBuf::from("/keys/ca.pem")
    );
    let (cert, key) = p.identity.unwrap();
    assert_eq!(
        (cert.path, key.path),
        ("/keys/me.pem".into(), "/keys/me.key".into())
    );
    // Flags and variables beat the context's files.
    let flags = RemoteArgs {
        ca_cert: Some("/mine/ca.pem".into()),
        ..RemoteArgs::default()
    };
    let env = Env {
        token: Some(Secret("pmd_env".into())),
        ..Env::default()
    };
    let p = plan(choose(&flags, &env, loader(file())).unwrap());
    assert_eq!(p.token, Some(TokenFrom::Env(Secret("pmd_env".into()))));
    assert_eq!(p.ca_cert.unwrap().path, PathBuf::from("/mine/ca.pem"));
    // `local` is the socket, whatever is current.
    let flags = RemoteArgs {
        context: Some("local".into()),
        ..RemoteArgs::default()
    };
    let choice = choose(&flags, &Env::default(), loader(file())).unwrap();
    assert_eq!(choice, Choice::Local);
}

#[test]
fn mistakes_are_usage_errors_naming_their_source() {
    let env = |e: Env| choose(&RemoteArgs::default(), &e, loader(file()));
    let e = usage(env(Env {
        host: Some("https://h".into()),
        ..Env::default()
    }));
    assert!(
        e.starts_with("PMD_HOST: ") && e.contains("has no port"),
        "{e}"
    );
    let e = usage(env(Env {
        context: Some("staging".into()),
        ..Env::default()
    }));
    assert!(
        e.starts_with("PMD_CONTEXT: no context named \"staging\""),
        "{e}"
    );
    assert!(e.contains("known: lab, prod, local"), "{e}");
    let e = usage(env(Env {
        token_file: Some("/t".into()),
        token: Some(Secret("pmd_x".into())),
        ..Env::default()
    }));
    assert!(e.contains("both PMD_TOKEN_FILE and PMD_TOKEN"), "{e}");
    let flags = RemoteArgs {
        context: Some("staging".into()),
        ..RemoteArgs::default()
    };
    let e = usage(choose(&flags, &Env::default(), loader(Contexts::default())));
    assert!(e.starts_with("--context: no context named"), "{e}");
    assert!(e.contains("/cfg/contexts.yaml has none"), "{e}");
    // Files for a remote daemon without one.
    let flags = RemoteArgs {
        token_file: Some("/t".into()),
        ..RemoteArgs::default()
    };
    let e = usage(choose(&flags, &Env::default(), loader(Contexts::default())));
    assert!(e.starts_with("--token-file is for a remote daemon"), "{e}");
    // Certificates with plain HTTP.
    let flags = RemoteArgs {
        host: Some(url("http://10.0.0.1:7070")),
        ca_cert: Some("/ca.pem".into()),
        ..RemoteArgs::default()
    };
    let e = usage(choose(&flags, &Env::default(), never));
    assert!(e.contains("is plain HTTP"), "{e}");
}

fn temp_file(dir: &tempfile::TempDir, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn http_plan(token: Option<TokenFrom>) -> Plan {
    Plan {
        url: url("http://127.0.0.1:7070"),
        origin: Origin::Flag,
        token,
        ca_cert: None,
        identity: None,
    }
}

#[test]
fn token_files_are_read_trimmed_and_kept_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "pmd_0123456789abcdef";
    let good = temp_file(&dir, "good", &format!("{secret}\n"), 0o600);
    let remote = http_plan(file_token(good.to_str().unwrap(), "--token-file"))
        .load()
        .unwrap();
    let value = remote.authorization().unwrap();
    assert_eq!(value.to_str().unwrap(), format!("Bearer {secret}"));
    assert!(value.is_sensitive());
    assert!(!format!("{remote:?}").contains(secret), "{remote:?}");
    assert!(!format!("{value:?}").contains(secret), "{value:?}");
    assert_eq!(remote.token_source, Some(TokenSource::File(good.clone())));
    // Open to others: read all the same (the warning is on stderr).
    let open = temp_file(&dir, "open", secret, 0o644);
    assert!(
        http_plan(file_token(open.to_str().unwrap(), "--token-file"))
            .load()
            .is_ok()
    );
    let load_err = |token: Option<TokenFrom>| {
        let err = http_plan(token).load().unwrap_err();
        assert!(err.is::<UsageError>(), "{err}");
        let text = err.to_string();
        assert!(!text.contains("s3cr3t"), "a secret in a message: {text}");
        text
    };
    let empty = temp_file(&dir, "empty", " \n", 0o600);
    let e = load_err(file_token(empty.to_str().unwrap(), "PMD_TOKEN_FILE"));
    assert!(
        e.starts_with("PMD_TOKEN_FILE: ") && e.contains("is empty"),
        "{e}"
    );
    let spaced = temp_file(&dir, "spaced", "pmd_s3cr3t and more", 0o600);
    let e = load_err(file_token(spaced.to_str().unwrap(), "--token-file"));
    assert!(e.contains("does not look like a token"), "{e}");
    let e = load_err(file_token("/nonexistent/token", "--token-file"));
    assert!(e.contains("cannot read /nonexistent/token"), "{e}");
    let e = load_err(file_token(dir.path().to_str().unwrap(), "--token-file"));
    assert!(e.contains("is not a file"), "{e}");
    let e = load_err(Some(TokenFrom::Env(Secret(String::new()))));
    assert!(e.starts_with("PMD_TOKEN is empty"), "{e}");
    let e = load_err(Some(TokenFrom::Env(Secret("pmd_s3cr3t\u{e9}".into()))));
    assert!(e.starts_with("PMD_TOKEN does not look like a token"), "{e}");
}

#[test]
fn certificate_files_are_checked_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = temp_file(&dir, "ca.txt", "hello\n", 0o644);
    let https = |ca: Option<Named>, identity: Option<(Named, Named)>| Plan {
        url: url("https://127.0.0.1:7070"),
        origin: Origin::Flag,
        token: None,
        ca_cert: ca,
        identity,
    };
    let named = |p: &PathBuf, via: &str| Named {
        path: p.clone(),
        via: via.into(),
    };
    let err = https(Some(named(&not_pem, "--ca-cert")), None)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("--ca-cert: ") && err.contains("holds no certificate"),
        "{err}"
    );
    let missing = PathBuf::from("/nonexistent/ca.pem");
    let err = https(Some(named(&missing, "PMD_CA_CERT")), None)
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("PMD_CA_CERT: cannot read"), "{err}");
    // A real CA (made here) is accepted; a client certificate must be one.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = params.self_signed(&key).unwrap().pem();
    let ca = temp_file(&dir, "ca.pem", &ca_pem, 0o644);
    let remote = https(Some(named(&ca, "--ca-cert")), None).load().unwrap();
    assert_eq!(remote.ca_cert, Some(ca.clone()));
    assert_eq!(
        remote.tls.as_ref().unwrap().alpn_protocols,
        [b"h2".to_vec()]
    );
    let err = https(
        Some(named(&ca, "--ca-cert")),
        Some((
            named(&not_pem, "--client-cert"),
            named(&not_pem, "--client-key"),
        )),
    )
    .load()
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("--client-cert: "), "{err}");
    let key_file = temp_file(&dir, "key.pem", &key.serialize_pem(), 0o600);
    let err = https(
        Some(named(&ca, "--ca-cert")),
        Some((named(&ca, "--client-cert"), named(&not_pem, "--client-key"))),
    )
    .load()
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("--client-key: ") && err.contains("no PEM private key"),
        "{err}"
    );
    assert!(
        https(
            Some(named(&ca, "--ca-cert")),
            Some((
                named(&ca, "--client-cert"),
                named(&key_file, "--client-key")
            )),
        )
        .load()
        .is_ok()
    );
}

#[test]
fn clear_text_is_warned_off_loopback_only() {
    let warned = clear_text_warning(&url("http://10.0.0.5:7070")).unwrap();
    assert!(warned.contains("clear text"), "{warned}");
    assert_eq!(clear_text_warning(&url("http://127.0.0.1:7070")), None);
    assert_eq!(clear_text_warning(&url("http://localhost:7070")), None);
    assert_eq!(clear_text_warning(&url("https://10.0.0.5:7070")), None);
}
