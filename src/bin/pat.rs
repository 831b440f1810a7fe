//! `pat`: manage personal access tokens from a terminal (feature `cli`).
//!
//! ```text
//! pat [--store URL] token create -u USER [-n NAME] [-e 20d | -a SECONDS | --never] [-s SCOPE]... [-q]
//! pat [--store URL] token list [-u USER] [--expiring-within 7d] [--filter FIELD__OP=VALUE]... [--order-by F] [--json]
//! pat [--store URL] token show ID [--json]
//! pat [--store URL] token events [ID] [--owner U] [--type T] [--since 7d] [--until T] [--json]
//! pat [--store URL] token revoke|disable|enable ID
//! pat [--store URL] token rotate ID [--grace 1h] [--new-id] [-q]
//! pat [--store URL] token check TOKEN|- [--offline]
//! ```
//!
//! The store is `--store URL` or `PAT_STORE_URL` (default `sqlite://pat.db`). The expiry
//! policy is the library's default (30 days when no expiry is given, at most 366 days, no
//! "never"), changed by `--default-lifetime`, `--max-lifetime` and `--allow-never`
//! (`PAT_DEFAULT_LIFETIME`, `PAT_MAX_LIFETIME`, `PAT_ALLOW_NEVER`). Exit codes:
//! 0 done, 1 not found or invalid, 2 usage error, 3 store unavailable. Errors are one line
//! on stderr that says what to do.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tower_pat::manage::{apply_event_filter, apply_filter, parse_order};
use tower_pat::manage::{
    Actor, CreateTokenRequest, ExpiryPolicy, IssuedToken, ManageError, Manager, RotateRequest,
    TokenPatch, TokenView,
};
use tower_pat::parse_duration;
use tower_pat::store::{self, EventQuery, ListQuery, StoreError, TokenStore};
use tower_pat::{AuthError, Authenticator, Event, EventActor, EventKind, TokenFormat};

/// Manage personal access tokens in a tower-pat store.
#[derive(Debug, Parser)]
#[command(name = "pat", version, about, long_about = None)]
struct Cli {
    /// Store URL: sqlite://FILE, postgres://…, redis://… or memory://.
    #[arg(
        long,
        global = true,
        env = "PAT_STORE_URL",
        default_value = "sqlite://pat.db",
        hide_env_values = true
    )]
    store: String,
    /// Token prefix, as the server is configured (default `pat`).
    #[arg(long, global = true, env = "PAT_TOKEN_PREFIX", default_value = "pat")]
    prefix: String,
    /// Lifetime of a token created without -e, -a or --never.
    #[arg(
        long,
        global = true,
        env = "PAT_DEFAULT_LIFETIME",
        default_value = "30d"
    )]
    default_lifetime: String,
    /// Longest lifetime a token may have (the cap of an auto-refresh token included).
    #[arg(long, global = true, env = "PAT_MAX_LIFETIME", default_value = "366d")]
    max_lifetime: String,
    /// Allow tokens that never expire (`token create --never`).
    #[arg(long, global = true, env = "PAT_ALLOW_NEVER")]
    allow_never: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, show, change, rotate, revoke and check tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Serve forward auth for reverse proxies (nginx auth_request, Caddy forward_auth,
    /// Traefik forwardAuth, Envoy ext_authz) and the admin API.
    #[cfg(feature = "server")]
    Serve(ServeArgs),
}

/// `pat serve`: where to listen, which rules, whom to trust.
#[cfg(feature = "server")]
#[derive(Debug, Args)]
#[command(
    after_help = "Routes: /auth (nginx, Caddy, Traefik: the original request in \
X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI), \
/ext-authz/... (Envoy ext_authz, path_prefix /ext-authz), /personal-access-tokens (admin API), \
/healthz, /readyz, /metrics (Prometheus). A check that passes is 200 with X-Pat-Owner, X-Pat-Token-Id, X-Pat-Scopes \
and X-Pat-Expires-At for the proxy to copy upstream; the forward-auth routes believe the \
proxy's headers, so only the proxy should reach them (or set --proxy-secret-file)."
)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PAT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Rules file (TOML): which scopes a method and path need. Without it any valid
    /// token passes.
    #[arg(long, env = "PAT_RULES", value_name = "FILE")]
    rules: Option<std::path::PathBuf>,
    /// A file holding the secret the proxy sends as X-Pat-Proxy-Secret; checks without
    /// it are 401.
    #[arg(long, env = "PAT_PROXY_SECRET_FILE", value_name = "FILE")]
    proxy_secret_file: Option<std::path::PathBuf>,
    /// Validate a rules file, print its table, and exit (the store is not opened).
    #[arg(long, value_name = "FILE")]
    check_rules: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create(CreateArgs),
    /// List tokens as a table (or JSON).
    List(ListArgs),
    /// Show one token.
    Show {
        /// The token's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log, newest first: every token's events, or one token's.
    Events(EventsArgs),
    /// Delete a token: it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
    },
    /// Disable a token (kept, refused until enabled).
    Disable {
        /// The token's id.
        id: String,
    },
    /// Enable a disabled token.
    Enable {
        /// The token's id.
        id: String,
    },
    /// Give a token a new secret (or a new id) and print it.
    Rotate {
        /// The token's id.
        id: String,
        /// Keep the old secret working this long, e.g. 1h.
        #[arg(long)]
        grace: Option<String>,
        /// Replace the token with a new id instead of a new secret for the same id.
        #[arg(long)]
        new_id: bool,
        /// Print only the new token value.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check a token: format and checksum offline, then owner, scopes and expiry from the store.
    Check {
        /// The token, or `-` to read it from standard input.
        token: String,
        /// Check only the format and checksum; do not open the store.
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// User login the token acts for (mandatory).
    #[arg(short, long)]
    user: String,
    /// Label, e.g. "terraform prod".
    #[arg(short, long, default_value = "")]
    name: String,
    /// Expire after a duration: a number and s, m, h, d or w, e.g. 20d.
    #[arg(short, long)]
    expire: Option<String>,
    /// Auto-refresh: valid while used at least once per this many seconds.
    #[arg(short, long)]
    auto: Option<u64>,
    /// A scope (repeatable); none = full access of the user.
    #[arg(short, long = "scope")]
    scope: Vec<String>,
    /// Never expire (only with --allow-never or PAT_ALLOW_NEVER=true).
    #[arg(long, conflicts_with_all = ["expire", "auto"])]
    never: bool,
    /// Print only the token value.
    #[arg(short, long)]
    quiet: bool,
    /// Print JSON (with the token value).
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this user's tokens.
    #[arg(short, long)]
    user: Option<String>,
    /// A filter FIELD__OP=VALUE (repeatable), e.g. name__icontains=ci, active=false,
    /// expires__lt=2030-01-01T00:00:00Z, last_used__isnull=true, last_used_ip=192.0.2.7,
    /// scope=repo:read, search=deploy.
    #[arg(long = "filter", value_name = "FIELD__OP=VALUE")]
    filters: Vec<String>,
    /// Only tokens that expire within this duration from now (and have not yet), e.g. 7d.
    #[arg(long, value_name = "DURATION")]
    expiring_within: Option<String>,
    /// Order: created, last_used, expires or name; prefix '-' for descending.
    #[arg(long, allow_hyphen_values = true)]
    order_by: Option<String>,
    #[command(flatten)]
    out: Listing,
}

/// How a listing is paged and printed (`token list`, `token events`).
#[derive(Debug, Args)]
struct Listing {
    /// Page, from 1.
    #[arg(long, default_value_t = 1)]
    page: u32,
    /// Items per page (1 to 1000).
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EventsArgs {
    /// Only this token's events (also after it was deleted).
    id: Option<String>,
    /// Only events of this user's tokens.
    #[arg(short, long)]
    owner: Option<String>,
    /// Only events of this type: created, changed, rotated, disabled, enabled, deleted,
    /// revoked_as_leaked, first_use, new_client_address, expiring_soon, expired.
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Only events since this time: RFC 3339, or a duration before now such as 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time: RFC 3339, or a duration before now such as 1h.
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    out: Listing,
}

/// A failure: its exit code and one line for stderr.
struct Fail {
    code: u8,
    message: String,
}

impl Fail {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

fn store_fail(e: &StoreError, url: &str) -> Fail {
    let url = store::mask_url(url);
    match e {
        StoreError::Invalid(m) => Fail {
            code: 2,
            message: format!("bad store URL {url}: {m}; fix --store or PAT_STORE_URL"),
        },
        other => Fail {
            code: 3,
            message: format!(
                "cannot use the token store {url}: {other}; check --store or PAT_STORE_URL and that the store is running"
            ),
        },
    }
}

fn manage_fail(e: ManageError) -> Fail {
    let hint = match &e {
        ManageError::NotFound { .. } => "list the ids with `pat token list`",
        ManageError::Policy { field, .. } if field == "never_expires" => {
            "pass --allow-never (or set PAT_ALLOW_NEVER=true) where tokens that never expire are acceptable"
        }
        ManageError::BadInput { .. } | ManageError::Patch(_) | ManageError::Policy { .. } => {
            "fix the value and try again"
        }
        ManageError::Unavailable(_) => {
            "check --store or PAT_STORE_URL and that the store is running"
        }
        _ => "see `pat token --help`",
    };
    let code = match e {
        ManageError::Unavailable(_) => 3,
        _ => 1,
    };
    Fail {
        code,
        message: format!("{e}; {hint}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "server")]
    let mut builder = if matches!(cli.command, Command::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    #[cfg(not(feature = "server"))]
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message.replace(['\n', '\r'], " "));
            ExitCode::from(f.code)
        }
    }
}

async fn open(cli: &Cli) -> Result<(Manager, Arc<dyn TokenStore>), Fail> {
    let format = TokenFormat::with_prefix(&cli.prefix).map_err(|e| Fail {
        code: 2,
        message: format!("bad --prefix {:?}: {e}", cli.prefix),
    })?;
    let store = store::open(&cli.store)
        .await
        .map_err(|e| store_fail(&e, &cli.store))?;
    let auth = Authenticator::builder(store.clone())
        .with_format(format)
        .build();
    Ok((Manager::new(auth).with_policy(policy(cli)?), store))
}

/// The expiry policy the flags describe (the library's default without them).
fn policy(cli: &Cli) -> Result<ExpiryPolicy, Fail> {
    let duration = |flag: &str, v: &str| {
        parse_duration(v).map_err(|e| Fail {
            code: 2,
            message: format!("bad --{flag}: {e}"),
        })
    };
    let mut p = ExpiryPolicy::new()
        .with_default_lifetime(Some(duration("default-lifetime", &cli.default_lifetime)?))
        .with_max_lifetime(duration("max-lifetime", &cli.max_lifetime)?);
    if cli.allow_never {
        p = p.allow_never();
    }
    Ok(p)
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let cmd = match &cli.command {
        Command::Token(cmd) => cmd,
        #[cfg(feature = "server")]
        Command::Serve(a) => return serve::serve(&cli, a).await,
    };
    if let TokenCommand::Check { token, offline } = cmd {
        return check(&cli, token, *offline).await;
    }
    let (m, _) = open(&cli).await?;
    let done = command(&m, cmd).await;
    // The events of what was done go to the sinks (the audit log) before the process ends.
    let _ = m.authenticator().shutdown().await;
    done
}

async fn command(m: &Manager, cmd: &TokenCommand) -> Result<(), Fail> {
    let op = &Actor::Operator;
    let mut out = std::io::stdout().lock();
    match cmd {
        TokenCommand::Create(a) => {
            let req = CreateTokenRequest {
                owner: Some(a.user.clone()),
                name: a.name.clone(),
                scopes: a.scope.clone(),
                expire: a.expire.clone(),
                auto_refresh_seconds: a.auto,
                never_expires: a.never,
                ..CreateTokenRequest::default()
            };
            let issued = m.create(op, req).await.map_err(manage_fail)?;
            print_issued(&mut out, &issued, a.quiet, a.json);
        }
        TokenCommand::List(a) => {
            let mut q = ListQuery::new();
            for f in &a.filters {
                let (k, v) = f.split_once('=').ok_or_else(|| Fail {
                    code: 2,
                    message: format!(
                        "--filter {f:?} is not FIELD__OP=VALUE, e.g. name__icontains=ci"
                    ),
                })?;
                apply_filter(&mut q, k, v).map_err(manage_fail)?;
            }
            if let Some(u) = &a.user {
                q.owner = Some(u.clone());
            }
            if let Some(within) = &a.expiring_within {
                apply_filter(&mut q, "expires_within", within).map_err(manage_fail)?;
            }
            if let Some(o) = &a.order_by {
                q.order = parse_order(o).map_err(manage_fail)?;
            }
            let q = q.page(a.out.page, a.out.page_size);
            let page = m.list(op, q).await.map_err(manage_fail)?;
            if a.out.json {
                let doc = serde_json::json!({"count": page.total, "results": page.items});
                let _ = writeln!(out, "{doc}");
            } else {
                print_table(&mut out, &page.items, page.total);
            }
        }
        TokenCommand::Show { id, json } => {
            let v = m.get(op, id).await.map_err(manage_fail)?;
            if *json {
                let _ = writeln!(out, "{}", serde_json::to_string(&v).unwrap_or_default());
            } else {
                print_view(&mut out, &v);
            }
        }
        TokenCommand::Events(a) => {
            let now = m.authenticator().clock().now();
            let mut q = EventQuery::new();
            let filters = [
                ("token_id", &a.id),
                ("owner", &a.owner),
                ("type", &a.kind),
                ("since", &a.since),
                ("until", &a.until),
            ];
            for (k, v) in filters {
                if let Some(v) = v {
                    apply_event_filter(&mut q, k, v, now).map_err(manage_fail)?;
                }
            }
            let q = q.page(a.out.page, a.out.page_size);
            let page = m.events(op, q).await.map_err(manage_fail)?;
            if a.out.json {
                let doc = serde_json::json!({"count": page.total, "results": page.items});
                let _ = writeln!(out, "{doc}");
            } else {
                print_events(&mut out, &page.items, page.total);
            }
        }
        TokenCommand::Revoke { id } => {
            m.delete(op, id).await.map_err(manage_fail)?;
            let _ = writeln!(out, "revoked {id}");
        }
        TokenCommand::Disable { id } | TokenCommand::Enable { id } => {
            let on = matches!(cmd, TokenCommand::Enable { .. });
            m.patch(op, id, TokenPatch::new().active(on))
                .await
                .map_err(manage_fail)?;
            let _ = writeln!(out, "{} {id}", if on { "enabled" } else { "disabled" });
        }
        TokenCommand::Rotate {
            id,
            grace,
            new_id,
            quiet,
        } => {
            let req = RotateRequest {
                grace: grace.clone(),
                new_id: *new_id,
                ..Default::default()
            };
            let issued = m.rotate(op, id, req).await.map_err(manage_fail)?;
            print_issued(&mut out, &issued, *quiet, false);
        }
        TokenCommand::Check { .. } => {}
    }
    Ok(())
}

async fn check(cli: &Cli, token: &str, offline: bool) -> Result<(), Fail> {
    let token = if token == "-" {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Fail::invalid(format!("cannot read the token from standard input: {e}"))
        })?;
        line.trim().to_owned()
    } else {
        token.to_owned()
    };
    let format = TokenFormat::with_prefix(&cli.prefix).map_err(|e| Fail {
        code: 2,
        message: format!("bad --prefix {:?}: {e}", cli.prefix),
    })?;
    let parsed = format.parse(&token).map_err(|e| {
        Fail::invalid(format!(
            "not a valid token: {e}; check that it was copied whole and that --prefix matches"
        ))
    })?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "format: ok (prefix {}, checksum valid)",
        format.prefix()
    );
    let _ = writeln!(out, "id: {}", parsed.id);
    if offline {
        return Ok(());
    }
    let (m, _) = open(cli).await?;
    let checked = m.authenticator().authenticate(&token).await;
    // Its use (and a first-use event) reach the store before the process ends.
    let _ = m.authenticator().shutdown().await;
    match checked {
        Ok(p) => {
            let _ = writeln!(out, "status: valid");
            let _ = writeln!(out, "owner: {}", p.owner());
            let _ = writeln!(out, "name: {}", p.token_name());
            let _ = writeln!(out, "scopes: {}", scopes_text(&p.scopes().iter().map(ToString::to_string).collect::<Vec<_>>()));
            let _ = writeln!(out, "expires: {}", time_text(p.expires_at(), "never"));
            Ok(())
        }
        Err(AuthError::StoreUnavailable(e)) => Err(store_fail(&e, &cli.store)),
        Err(AuthError::Invalid(reason)) => Err(Fail::invalid(format!(
            "token refused: {reason}; create or rotate a token with `pat token create` / `pat token rotate`"
        ))),
        Err(e) => Err(Fail::invalid(format!("token refused: {e}"))),
    }
}

fn time_text(t: Option<OffsetDateTime>, none: &str) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| none.to_owned())
}

fn scopes_text(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "(full access of the owner)".to_owned()
    } else {
        scopes.join(" ")
    }
}

fn expiry_text(v: &TokenView) -> String {
    match (v.expiry.as_str(), v.auto_refresh_seconds) {
        ("auto_refresh", Some(w)) => format!(
            "{} (auto-refresh every {w} s{})",
            time_text(v.expires_at, "never"),
            v.not_after
                .map(|n| format!(", not after {}", time_text(Some(n), "")))
                .unwrap_or_default()
        ),
        _ => time_text(v.expires_at, "never"),
    }
}

fn print_issued(out: &mut impl Write, issued: &IssuedToken, quiet: bool, json: bool) {
    if quiet {
        let _ = writeln!(out, "{}", issued.token.expose());
        return;
    }
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string(issued).unwrap_or_default());
        return;
    }
    let _ = writeln!(out, "token: {}", issued.token.expose());
    print_view(out, &issued.view);
    if let Some(old) = issued.replaces {
        let _ = writeln!(out, "replaces: {old}");
    }
    let _ = writeln!(out, "Store the token now: it cannot be shown again.");
}

fn print_view(out: &mut impl Write, v: &TokenView) {
    let _ = writeln!(out, "id: {}", v.id);
    let _ = writeln!(out, "owner: {}", v.owner);
    let _ = writeln!(out, "name: {}", v.name);
    let _ = writeln!(out, "scopes: {}", scopes_text(&v.scopes));
    let _ = writeln!(out, "expires: {}", expiry_text(v));
    let _ = writeln!(out, "active: {}", v.active);
    let _ = writeln!(out, "created: {}", time_text(Some(v.created), ""));
    let _ = writeln!(out, "last used: {}", time_text(v.last_used, "never"));
    if let Some(from) = origin_text(v.last_used_ip, v.last_used_user_agent.as_deref()) {
        let _ = writeln!(out, "last used from: {from}");
    }
    if let Some(from) = origin_text(v.created_ip, v.created_user_agent.as_deref()) {
        let _ = writeln!(out, "created from: {from}");
    }
    if let Some(until) = v.previous_secret_valid_until {
        let _ = writeln!(
            out,
            "previous secret valid until: {}",
            time_text(Some(until), "")
        );
    }
}

/// `address (user agent)`, either part alone, or `None` when neither is known.
fn origin_text(ip: Option<std::net::IpAddr>, user_agent: Option<&str>) -> Option<String> {
    match (ip, user_agent) {
        (Some(ip), Some(ua)) => Some(format!("{ip} ({ua})")),
        (Some(ip), None) => Some(ip.to_string()),
        (None, Some(ua)) => Some(format!("({ua})")),
        (None, None) => None,
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        let mut c: String = s.chars().take(n - 1).collect();
        c.push('…');
        c
    } else {
        s.to_owned()
    }
}

fn print_table(out: &mut impl Write, items: &[TokenView], total: u64) {
    let header = [
        "ID",
        "OWNER",
        "NAME",
        "SCOPES",
        "EXPIRES",
        "LAST USED",
        "LAST USED FROM",
        "ACTIVE",
    ];
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|v| {
            [
                v.id.to_string(),
                cut(&v.owner, 24),
                cut(&v.name, 30),
                cut(&scopes_text(&v.scopes), 40),
                time_text(v.expires_at, "never"),
                time_text(v.last_used, "never"),
                cut(
                    &origin_text(v.last_used_ip, v.last_used_user_agent.as_deref())
                        .unwrap_or_else(|| "-".to_owned()),
                    40,
                ),
                if v.active { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    print_rows(out, &header, &rows);
    let _ = writeln!(out, "{} of {total} tokens", rows.len());
}

/// What an event says beyond its type, in a few words.
fn event_detail(e: &Event) -> String {
    match &e.kind {
        EventKind::Changed { fields } => fields.join(","),
        EventKind::Rotated { new_id: Some(id) } => format!("new id {id}"),
        EventKind::ExpiringSoon { lead } => {
            let s = lead.as_secs();
            if s % 86_400 == 0 {
                format!("in {} d", s / 86_400)
            } else {
                format!("in {} h", s / 3600)
            }
        }
        _ => String::new(),
    }
}

fn print_events(out: &mut impl Write, items: &[Event], total: u64) {
    let header = ["AT", "TYPE", "TOKEN", "OWNER", "ACTOR", "FROM", "DETAIL"];
    let rows: Vec<[String; 7]> = items
        .iter()
        .map(|e| {
            let actor = match &e.actor {
                EventActor::Token { id, .. } => format!("token {id}"),
                other => other.to_string(),
            };
            [
                time_text(Some(e.at), ""),
                e.kind.name().to_owned(),
                e.token_id.to_string(),
                cut(&e.owner, 24),
                actor,
                cut(
                    &origin_text(e.client, e.user_agent.as_deref()).unwrap_or_else(|| "-".into()),
                    40,
                ),
                event_detail(e),
            ]
        })
        .collect();
    print_rows(out, &header, &rows);
    let _ = writeln!(out, "{} of {total} events", rows.len());
}

/// A table: the header and the rows, in columns as wide as their widest cell.
fn print_rows<const N: usize>(out: &mut impl Write, header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w.saturating_sub(c.chars().count())));
            }
        }
        s
    };
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
}

#[cfg(feature = "server")]
mod serve {
    use std::net::SocketAddr;

    use tower_pat::server::{router, ForwardAuth, Rules};

    use super::*;

    fn read_rules(path: &std::path::Path) -> Result<Rules, Fail> {
        let text = std::fs::read_to_string(path).map_err(|e| Fail {
            code: 2,
            message: format!("cannot read the rules file {}: {e}", path.display()),
        })?;
        Rules::parse(&text).map_err(|e| Fail {
            code: 2,
            message: format!("rules file {}: {e}", path.display()),
        })
    }

    pub(super) async fn serve(cli: &Cli, a: &ServeArgs) -> Result<(), Fail> {
        if let Some(path) = &a.check_rules {
            let rules = read_rules(path)?;
            println!("{rules}");
            return Ok(());
        }
        let rules = match &a.rules {
            Some(path) => read_rules(path)?,
            None => {
                eprintln!("no --rules: every valid token passes /auth and /ext-authz");
                Rules::authenticated()
            }
        };
        let listen: SocketAddr = a.listen.parse().map_err(|e| Fail {
            code: 2,
            message: format!(
                "bad --listen {:?}: {e}; give an address such as 127.0.0.1:8080",
                a.listen
            ),
        })?;
        let format = TokenFormat::with_prefix(&cli.prefix).map_err(|e| Fail {
            code: 2,
            message: format!("bad --prefix {:?}: {e}", cli.prefix),
        })?;
        let mut forward_secret = None;
        if let Some(path) = &a.proxy_secret_file {
            let secret = std::fs::read_to_string(path).map_err(|e| Fail {
                code: 2,
                message: format!("cannot read the proxy secret file {}: {e}", path.display()),
            })?;
            forward_secret = Some(secret);
        }
        let policy = policy(cli)?;
        // Before the authenticator is built, which registers its metrics with it.
        let metrics = prometheus()?;
        let store = store::open(&cli.store)
            .await
            .map_err(|e| store_fail(&e, &cli.store))?;
        let auth = Authenticator::builder(store).with_format(format).build();
        let mut forward = ForwardAuth::new(auth.clone(), rules);
        if let Some(secret) = forward_secret {
            forward = forward.with_proxy_secret(&secret).map_err(|m| Fail {
                code: 2,
                message: format!("--proxy-secret-file: {m}"),
            })?;
        }
        let background = tokio::spawn(auth.background());
        let app = router(Manager::new(auth.clone()).with_policy(policy), forward).route(
            "/metrics",
            axum::routing::get(move || async move { metrics.render() }),
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Fail::invalid(format!("cannot listen on {listen}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Fail::invalid(e.to_string()))?;
        eprintln!(
            "listening on http://{bound} (store {})",
            store::mask_url(&cli.store)
        );
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped())
        .await;
        let _ = auth.shutdown().await;
        let _ = background.await;
        served.map_err(|e| Fail::invalid(format!("the server failed: {e}")))
    }

    /// The process's Prometheus recorder, with tower-pat's metrics described and its
    /// durations as histograms (buckets from 2 µs to 5 s); a task drains them every 5 s.
    fn prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle, Fail> {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        const BUCKETS: &[f64] = &[
            0.000_002, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05,
            0.1, 0.5, 1.0, 5.0,
        ];
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Prefix("pat_".into()), BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .map_err(|e| Fail::invalid(format!("cannot install the metrics recorder: {e}")))?;
        tower_pat::describe_metrics();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        Ok(handle)
    }

    /// Resolves on Ctrl-C or SIGTERM.
    async fn stopped() {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
    }
}
