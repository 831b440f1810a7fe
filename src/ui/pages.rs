//! The page's HTML (maud templates: every value escaped) and the create form's fields.

use std::collections::BTreeMap;

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use maud::{html, Markup, DOCTYPE};
use time::OffsetDateTime;

use super::form::Form;
use super::Ctx;
use crate::events::{Event, EventActor, EventKind};
use crate::manage::{CreateTokenRequest, ExpiryPolicy, IssuedToken, ManageError, TokenView};
use crate::scope::Scope;
use crate::store::Page;

/// A token ends "soon" within this many seconds (7 days), as the reminders count it.
const SOON: i64 = 7 * 86_400;

/// The expiry presets of the create form, in days.
const PRESETS: [u32; 4] = [7, 30, 60, 90];

/// Auto-refresh windows offered: (seconds, words).
const WINDOWS: [(u64, &str); 4] = [
    (3_600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
    (30 * 86_400, "30 days"),
];

/// Grace periods offered on rotation: (value, words).
pub(super) const GRACES: [(&str, &str); 4] = [
    ("0", "none: the old secret stops at once"),
    ("1h", "1 hour"),
    ("1d", "1 day"),
    ("7d", "7 days"),
];

/// A notice after an action that redirected here.
#[derive(Debug, Clone, Copy)]
pub(super) enum Flash {
    Revoked,
    Disabled,
    Enabled,
}

impl Flash {
    pub(super) fn from_query(done: Option<&str>) -> Option<Self> {
        match done? {
            "revoked" => Some(Flash::Revoked),
            "disabled" => Some(Flash::Disabled),
            "enabled" => Some(Flash::Enabled),
            _ => None,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Flash::Revoked => "The token was revoked. Anything still using it is refused.",
            Flash::Disabled => "The token is disabled: it is refused until you enable it again.",
            Flash::Enabled => "The token is enabled again.",
        }
    }
}

/// `message` as a sentence: a capital first letter and a full stop.
pub(super) fn sentence(message: &str) -> String {
    let mut s: String = message.trim().to_owned();
    if let Some(first) = s.get(..1) {
        let upper = first.to_uppercase();
        s.replace_range(..1, &upper);
    }
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

fn page(ctx: Option<&Ctx>, status: StatusCode, title: &str, body: Markup) -> Response {
    let base = ctx.map_or("", |c| c.base.as_str());
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Personal access tokens" }
                @if ctx.is_some() {
                    link rel="icon" href={ (base) "/assets/icon.svg" } type="image/svg+xml";
                    link rel="stylesheet" href={ (base) "/assets/style.css" };
                    script src={ (base) "/assets/page.js" } defer {}
                }
            }
            body {
                header.top {
                    @if let Some(c) = ctx {
                        a.brand href=(c.home()) { "Personal access tokens" }
                        span.who {
                            "Signed in as " strong { (c.user.name()) }
                            @if c.user.is_admin() { " " span.badge.admin { "admin" } }
                        }
                    } @else {
                        span.brand { "Personal access tokens" }
                    }
                }
                main { (body) }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// A page with a title and a sentence, outside any context (not signed in).
pub(super) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    page(None, status, title, html! { h1 { (title) } p { (text) } })
}

/// A page with a title, a sentence and a way back.
pub(super) fn message_in(ctx: &Ctx, status: StatusCode, title: &str, text: &str) -> Response {
    page(
        Some(ctx),
        status,
        title,
        html! {
            h1 { (title) }
            p.notice.error role="alert" { (text) }
            p { a href=(ctx.home()) { "Back to your tokens" } }
        },
    )
}

fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

fn date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `YYYY-MM-DD` of `t` in UTC, as a date input takes it.
fn day(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).date().to_string()
}

/// "in 5 days", "3 hours ago", "just now".
pub(super) fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (t - now).whole_seconds();
    let (n, unit) = match secs.unsigned_abs() {
        s if s < 60 => return "just now".into(),
        s if s < 3_600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3_600, "hour"),
        s if s < 60 * 86_400 => (s / 86_400, "day"),
        s if s < 730 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if secs > 0 {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

fn time_el(t: OffsetDateTime, now: OffsetDateTime) -> Markup {
    let iso = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    html! {
        time datetime=(iso) title=(date(t)) { (relative(t, now)) }
        br; span.muted { (date(t)) }
    }
}

/// The token's state: (class, words).
fn status(view: &TokenView, now: OffsetDateTime) -> (&'static str, &'static str) {
    match view.expires_at {
        _ if !view.active => ("disabled", "disabled"),
        Some(e) if e <= now => ("expired", "expired"),
        Some(e) if (e - now).whole_seconds() <= SOON => ("soon", "expires soon"),
        _ => ("active", "active"),
    }
}

fn scopes(view_scopes: &[String]) -> Markup {
    html! {
        @if view_scopes.is_empty() {
            span.badge.full { "full access" }
        } @else {
            ul.scopes {
                @for s in view_scopes { li { code { (s) } } }
            }
        }
    }
}

fn expiry_cell(view: &TokenView, now: OffsetDateTime) -> Markup {
    html! {
        @match view.expires_at {
            Some(e) => {
                (time_el(e, now))
                @if view.expiry == "auto_refresh" {
                    br; span.muted { "auto-refresh" }
                }
            }
            None => { span.muted { "never" } }
        }
    }
}

fn last_used(view: &TokenView, now: OffsetDateTime) -> Markup {
    html! {
        @match view.last_used {
            Some(t) => {
                (time_el(t, now))
                @if let Some(ip) = view.last_used_ip {
                    br; span.muted { "from " (ip) }
                }
                @if let Some(ua) = &view.last_used_user_agent {
                    br; span.muted.ua title=(ua) { (ua) }
                }
            }
            None => { span.muted { "never used" } }
        }
    }
}

pub(super) fn list(
    ctx: &Ctx,
    page_items: &Page<TokenView>,
    number: u32,
    size: u32,
    owner: Option<&str>,
    flash: Option<Flash>,
    now: OffsetDateTime,
) -> Response {
    let base = &ctx.base;
    let admin = ctx.user.is_admin();
    let pages = page_items.total.div_ceil(u64::from(size.max(1))).max(1);
    let owner_q = owner.map_or(String::new(), |o| {
        format!("&owner={}", crate::admin::encode(o))
    });
    let body = html! {
        div.heading {
            h1 { "Personal access tokens" }
            a.button.primary href={ (base) "/new" } { "Generate new token" }
        }
        p.lead {
            "Tokens let scripts, tools and other services act as you. "
            "Treat each one like a password: give it only the scopes it needs and an end."
        }
        @if let Some(f) = flash { p.notice role="status" { (f.text()) } }
        @if admin {
            form.filter method="get" action=(ctx.home()) {
                label for="owner" { "Owner" }
                input #owner type="text" name="owner" value=[owner] placeholder="everyone";
                button type="submit" { "Filter" }
            }
        }
        @if page_items.items.is_empty() && number > 1 {
            p.empty { "Nothing on this page. " a href=(ctx.home()) { "Back to the first page." } }
        } @else if page_items.items.is_empty() {
            p.empty { "No tokens yet. " a href={ (base) "/new" } { "Generate your first one." } }
        } @else {
            div.table-wrap {
                table {
                    caption.visually-hidden { "Your tokens" }
                    thead { tr {
                        th scope="col" { "Name" }
                        @if admin { th scope="col" { "Owner" } }
                        th scope="col" { "Scopes" }
                        th scope="col" { "Status" }
                        th scope="col" { "Expires" }
                        th scope="col" { "Last used" }
                        th scope="col" { "Created" }
                    } }
                    tbody {
                        @for v in &page_items.items {
                            @let (class, words) = status(v, now);
                            tr {
                                td { a href={ (base) "/" (v.id) } { (v.name) } br; code.muted { (v.id) } }
                                @if admin { td { (v.owner) } }
                                td { (scopes(&v.scopes)) }
                                td { span class={ "badge " (class) } { (words) } }
                                td { (expiry_cell(v, now)) }
                                td { (last_used(v, now)) }
                                td { (time_el(v.created, now)) }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pager aria-label="Pages" {
                    @if number > 1 {
                        a href={ (ctx.home()) "?page=" (number - 1) (owner_q) } { "Previous" }
                    }
                    span { "Page " (number) " of " (pages) }
                    @if u64::from(number) < pages {
                        a href={ (ctx.home()) "?page=" (number + 1) (owner_q) } { "Next" }
                    }
                }
            }
        }
    };
    page(Some(ctx), StatusCode::OK, "Your tokens", body)
}

/// Errors by form field: `name`, `owner`, `scopes`, `expiry`, or `form` for the rest.
#[derive(Debug, Default)]
pub(super) struct FieldErrors(BTreeMap<&'static str, String>);

impl FieldErrors {
    pub(super) fn set(&mut self, field: &'static str, message: String) {
        self.0.entry(field).or_insert(message);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// The form field a management error is about.
    pub(super) fn field_of(e: &ManageError) -> Option<&'static str> {
        let field = match e {
            ManageError::BadInput { field, .. } | ManageError::Policy { field, .. } => field,
            ManageError::Forbidden { scope: Some(_), .. } => return Some("scopes"),
            _ => return None,
        };
        Some(match field.as_str() {
            "name" => "name",
            "owner" => "owner",
            "scopes" => "scopes",
            "expire"
            | "expires_at"
            | "never_expires"
            | "auto_refresh_seconds"
            | "validity_seconds" => "expiry",
            _ => return None,
        })
    }
}

/// The create form as filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CreateForm {
    pub(super) name: String,
    pub(super) owner: String,
    checked: Vec<String>,
    full_access: bool,
    extra: String,
    expiry: String,
    date: String,
    window: String,
}

impl Default for CreateForm {
    fn default() -> Self {
        Self {
            name: String::new(),
            owner: String::new(),
            checked: Vec::new(),
            full_access: false,
            extra: String::new(),
            expiry: "30".into(),
            date: String::new(),
            window: "86400".into(),
        }
    }
}

impl CreateForm {
    pub(super) fn from_form(f: &Form) -> Self {
        let text = |k: &str| f.one(k).unwrap_or_default().to_owned();
        Self {
            name: text("name"),
            owner: text("owner"),
            checked: f.all("scope").map(str::to_owned).collect(),
            full_access: f.one("full_access").is_some(),
            extra: text("extra_scopes"),
            expiry: text("expiry"),
            date: text("date"),
            window: text("window"),
        }
    }

    /// The request the form asks for, or `None` with `errors` filled.
    pub(super) fn request(
        &self,
        catalogue: &[(Scope, String)],
        errors: &mut FieldErrors,
    ) -> Option<CreateTokenRequest> {
        let mut req = CreateTokenRequest {
            name: self.name.trim().to_owned(),
            ..CreateTokenRequest::default()
        };
        if req.name.is_empty() {
            errors.set(
                "name",
                "Give the token a name, so you know later what it is for.".into(),
            );
        }
        for s in &self.checked {
            if catalogue.iter().any(|(c, _)| c.to_string() == *s) {
                req.scopes.push(s.clone());
            } else {
                errors.set(
                    "scopes",
                    format!("{s:?} is not one of the scopes offered here."),
                );
            }
        }
        req.scopes.extend(
            self.extra
                .split([' ', ',', '\n', '\r', '\t'])
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        match (self.full_access, req.scopes.is_empty()) {
            (true, false) => errors.set(
                "scopes",
                "Choose full access or some scopes, not both.".into(),
            ),
            (false, true) => errors.set(
                "scopes",
                "Choose at least one scope, or full access.".into(),
            ),
            _ => {}
        }
        if let Err(e) = crate::manage::parse_scopes(&req.scopes) {
            errors.set("scopes", sentence(&message_of_bad(&e)));
        }
        match self.expiry.as_str() {
            "date" => match time::Date::parse(
                self.date.trim(),
                time::macros::format_description!("[year]-[month]-[day]"),
            ) {
                Ok(d) => {
                    req.expires_at = Some(format!("{d}T23:59:59Z"));
                }
                Err(_) => errors.set("expiry", "Give the date as YYYY-MM-DD.".into()),
            },
            "auto" => match self.window.trim().parse::<u64>() {
                Ok(w) if WINDOWS.iter().any(|(s, _)| *s == w) => req.auto_refresh_seconds = Some(w),
                _ => errors.set(
                    "expiry",
                    "Choose one of the auto-refresh windows offered.".into(),
                ),
            },
            "never" => req.never_expires = true,
            days => match days.parse::<u32>() {
                Ok(d) if PRESETS.contains(&d) => req.expire = Some(format!("{d}d")),
                _ => errors.set("expiry", "Choose when the token expires.".into()),
            },
        }
        errors.is_empty().then_some(req)
    }
}

fn message_of_bad(e: &ManageError) -> String {
    match e {
        ManageError::BadInput { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn field_error(errors: &FieldErrors, field: &str) -> Markup {
    html! {
        @if let Some(e) = errors.get(field) {
            p.field-error id={ (field) "-error" } { (e) }
        }
    }
}

fn described(errors: &FieldErrors, field: &str, hint: &str) -> String {
    match errors.get(field) {
        Some(_) => format!("{hint} {field}-error"),
        None => hint.to_owned(),
    }
}

/// "366 days", "12 hours", "30 minutes".
fn lifetime_words(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s >= 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s => (s.div_ceil(60), "minute"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn policy_text(policy: &ExpiryPolicy) -> String {
    let mut parts = Vec::new();
    match policy.max_lifetime {
        Some(m) => parts.push(format!(
            "Tokens on this server live at most {}.",
            lifetime_words(m.as_secs())
        )),
        None => parts.push("This server sets no maximum lifetime.".to_owned()),
    }
    if policy.max_lifetime.is_some() {
        parts.push("An auto-refresh token lives while it is used, up to that maximum.".into());
    }
    parts.join(" ")
}

pub(super) fn create(
    ctx: &Ctx,
    catalogue: &[(Scope, String)],
    policy: &ExpiryPolicy,
    f: &CreateForm,
    errors: &FieldErrors,
    status: StatusCode,
) -> Response {
    let base = &ctx.base;
    let checked = |s: &Scope| f.checked.iter().any(|c| *c == s.to_string());
    let body = html! {
        h1 { "Generate a new token" }
        @if let Some(e) = errors.get("form") {
            p.notice.error role="alert" { "The token was not made. " (e) }
        } @else if !errors.is_empty() {
            p.notice.error role="alert" { "The token was not made: see the fields marked below." }
        }
        form.stack method="post" action={ (base) "/new" } novalidate {
            (csrf(ctx))
            div.field {
                label for="name" { "Name" }
                p.hint #name-hint { "What is it for? For example \"laptop backup\" or \"CI deploy\"." }
                input #name type="text" name="name" value=(f.name) maxlength="255" required
                    autocomplete="off" aria-describedby=(described(errors, "name", "name-hint"))
                    aria-invalid=[errors.get("name").map(|_| "true")];
                (field_error(errors, "name"))
            }
            @if ctx.user.is_admin() {
                div.field {
                    label for="owner" { "Owner" }
                    p.hint #owner-hint { "Leave empty for a token of your own." }
                    input #owner type="text" name="owner" value=(f.owner) autocomplete="off"
                        aria-describedby=(described(errors, "owner", "owner-hint"));
                    (field_error(errors, "owner"))
                }
            }
            fieldset.field aria-describedby=(described(errors, "scopes", "scopes-hint")) {
                legend { "Scopes" }
                p.hint #scopes-hint { "What the token may do. Choose the fewest that do the job." }
                div.choice {
                    input #full_access type="checkbox" name="full_access" value="1" checked[f.full_access];
                    label for="full_access" { strong { "Full access" } span.muted { " — everything you can do" } }
                }
                @for (i, (scope, description)) in catalogue.iter().enumerate() {
                    div.choice {
                        input id={ "scope-" (i) } type="checkbox" name="scope" value=(scope.to_string()) checked[checked(scope)];
                        label for={ "scope-" (i) } { code { (scope.to_string()) } span.muted { " — " (description) } }
                    }
                }
                label for="extra_scopes" { "Other scopes" }
                input #extra_scopes type="text" name="extra_scopes" value=(f.extra) autocomplete="off"
                    placeholder="e.g. node:2f1c…:r" aria-describedby="extra-hint";
                p.hint #extra-hint { "Separated by spaces; checked by the same rules as the API." }
                (field_error(errors, "scopes"))
            }
            fieldset.field aria-describedby=(described(errors, "expiry", "expiry-hint")) {
                legend { "Expiration" }
                p.hint #expiry-hint { (policy_text(policy)) }
                @for d in PRESETS {
                    div.choice {
                        input id={ "exp-" (d) } type="radio" name="expiry" value=(d) checked[f.expiry == d.to_string()];
                        label for={ "exp-" (d) } { (d) " days" }
                    }
                }
                div.choice {
                    input #exp-date type="radio" name="expiry" value="date" checked[f.expiry == "date"];
                    label for="exp-date" { "On a date (the end of that day, UTC)" }
                    label.visually-hidden for="date" { "Expiry date" }
                    input #date type="date" name="date" value=(f.date) min=(day(ctx.now))
                        max=[policy.max_lifetime.map(|m| day(crate::clock::add(ctx.now, m.saturating_sub(std::time::Duration::from_secs(86_400)))))];
                }
                div.choice {
                    input #exp-auto type="radio" name="expiry" value="auto" checked[f.expiry == "auto"];
                    label for="exp-auto" { "Auto-refresh: valid while used at least once every" }
                    label.visually-hidden for="window" { "Auto-refresh window" }
                    select #window name="window" {
                        @for (s, words) in WINDOWS {
                            option value=(s) selected[f.window == s.to_string()] { (words) }
                        }
                    }
                }
                @if policy.never_allowed {
                    div.choice {
                        input #exp-never type="radio" name="expiry" value="never" checked[f.expiry == "never"];
                        label for="exp-never" { "No expiration (not recommended)" }
                    }
                }
                (field_error(errors, "expiry"))
            }
            div.actions {
                button.primary type="submit" { "Generate token" }
                a.button href=(ctx.home()) { "Cancel" }
            }
        }
    };
    page(Some(ctx), status, "New token", body)
}

pub(super) fn shown(
    ctx: &Ctx,
    issued: &IssuedToken,
    rotated: bool,
    now: OffsetDateTime,
) -> Response {
    let base = &ctx.base;
    let v = &issued.view;
    let body = html! {
        h1 { @if rotated { "Your rotated token" } @else { "Your new token" } }
        div.notice.warning role="alert" {
            strong { "Copy it now. " }
            "It will not be shown again: only a hash of it is kept. If you lose it, rotate the token to get a new one."
        }
        div.secret {
            label for="token" { "Token “" (v.name) "”" }
            div.copy-row {
                input #token type="text" readonly value=(issued.token.expose())
                    autocomplete="off" spellcheck="false" aria-describedby="copy-status";
                button #copy type="button" data-copy="token" { "Copy" }
            }
            p.muted #copy-status aria-live="polite" {}
        }
        @if rotated {
            p {
                @match v.previous_secret_valid_until {
                    Some(t) => { "The old secret keeps working until " (date(t)) " (" (relative(t, now)) ")." }
                    None => { "The old secret stopped working." }
                }
            }
        }
        dl.facts {
            dt { "Scopes" } dd { (scopes(&v.scopes)) }
            dt { "Expires" } dd { (expiry_cell(v, now)) }
        }
        p { "Send it as " code { "Authorization: Bearer <token>" } ", or as the password of HTTP Basic." }
        p.actions {
            a.button.primary href=(ctx.home()) { "Done" }
            a.button href={ (base) "/" (v.id) } { "Token details" }
        }
    };
    page(Some(ctx), StatusCode::OK, "New token", body)
}

pub(super) fn already_shown(ctx: &Ctx, token_id: Option<&str>) -> Response {
    let base = &ctx.base;
    let body = html! {
        h1 { "Already shown" }
        p.notice role="status" {
            "A token is shown only once, and this one was already shown (or waited too long). "
            "If you did not copy it, rotate the token to get a new one."
        }
        p.actions {
            @if let Some(id) = token_id {
                a.button.primary href={ (base) "/" (id) } { "Go to the token" }
            }
            a.button href=(ctx.home()) { "Back to your tokens" }
        }
    };
    page(Some(ctx), StatusCode::GONE, "Already shown", body)
}

fn event_text(e: &Event) -> String {
    match &e.kind {
        EventKind::Created => "Created".into(),
        EventKind::Changed { fields } => format!("Changed: {}", fields.join(", ")),
        EventKind::Rotated { new_id: Some(id) } => format!("Rotated to a new token {id}"),
        EventKind::Rotated { new_id: None } => "Rotated".into(),
        EventKind::Disabled => "Disabled".into(),
        EventKind::Enabled => "Enabled".into(),
        EventKind::Deleted => "Revoked".into(),
        EventKind::RevokedAsLeaked => "Disabled: reported as leaked".into(),
        EventKind::FirstUse => "First used".into(),
        EventKind::NewClientAddress => "Used from a new address".into(),
        EventKind::ExpiringSoon { lead } => {
            format!(
                "Reminder: expires within {} days",
                lead.as_secs().div_ceil(86_400)
            )
        }
        EventKind::Expired => "Expired".into(),
    }
}

fn actor_text(a: &EventActor) -> String {
    match a {
        EventActor::Token { id, .. } => format!("token {id}"),
        other => other.to_string(),
    }
}

pub(super) fn detail(
    ctx: &Ctx,
    v: &TokenView,
    events: Option<&Page<Event>>,
    flash: Option<Flash>,
    now: OffsetDateTime,
) -> Response {
    let base = &ctx.base;
    let (class, words) = status(v, now);
    let body = html! {
        p.crumbs { a href=(ctx.home()) { "← All tokens" } }
        div.heading {
            h1 { (v.name) }
            span class={ "badge " (class) } { (words) }
        }
        @if let Some(f) = flash { p.notice role="status" { (f.text()) } }
        dl.facts {
            dt { "Id" } dd { code { (v.id) } }
            @if ctx.user.is_admin() { dt { "Owner" } dd { (v.owner) } }
            dt { "Scopes" } dd { (scopes(&v.scopes)) }
            dt { "Expires" } dd { (expiry_cell(v, now)) }
            @if let Some(w) = v.auto_refresh_seconds {
                dt { "Auto-refresh" } dd { "valid while used at least once every " (window_words(w)) }
            }
            dt { "Last used" } dd { (last_used(v, now)) }
            dt { "Created" } dd {
                (time_el(v.created, now))
                @if let Some(ip) = v.created_ip { br; span.muted { "from " (ip) } }
            }
            @if let Some(t) = v.previous_secret_valid_until {
                dt { "Old secret" } dd { "works until " (date(t)) }
            }
        }
        section.actions-panel aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            form.inline method="post" action={ (base) "/" (v.id) "/rotate" } {
                (csrf(ctx))
                label for="grace" { "Grace for the old secret" }
                select #grace name="grace" {
                    @for (value, words) in GRACES { option value=(value) { (words) } }
                }
                button type="submit" { "Rotate" }
            }
            @if v.active {
                form.inline method="post" action={ (base) "/" (v.id) "/disable" } {
                    (csrf(ctx))
                    button type="submit" { "Disable" }
                }
            } @else {
                form.inline method="post" action={ (base) "/" (v.id) "/enable" } {
                    (csrf(ctx))
                    button type="submit" { "Enable" }
                }
            }
            p { a.button.danger href={ (base) "/" (v.id) "/revoke" } { "Revoke…" } }
        }
        section aria-labelledby="history-h" {
            h2 #history-h { "History" }
            @match events {
                Some(p) if !p.items.is_empty() => {
                    div.table-wrap { table {
                        caption.visually-hidden { "Events of this token, newest first" }
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "What" }
                            th scope="col" { "By" } th scope="col" { "From" }
                        } }
                        tbody { @for e in &p.items { tr {
                            td { (time_el(e.at, now)) }
                            td { (event_text(e)) }
                            td { (actor_text(&e.actor)) }
                            td {
                                @if let Some(ip) = e.client { (ip) }
                                @if let Some(ua) = &e.user_agent { br; span.muted.ua title=(ua) { (ua) } }
                            }
                        } } }
                    } }
                }
                Some(_) => { p.muted { "Nothing recorded yet." } }
                None => { p.muted { "The history could not be read just now." } }
            }
        }
    };
    page(Some(ctx), StatusCode::OK, &v.name, body)
}

fn window_words(seconds: u64) -> String {
    match WINDOWS.iter().find(|(s, _)| *s == seconds) {
        Some((_, w)) => (*w).to_owned(),
        None if seconds % 86_400 == 0 => format!("{} days", seconds / 86_400),
        None if seconds % 3_600 == 0 => format!("{} hours", seconds / 3_600),
        None => format!("{seconds} seconds"),
    }
}

pub(super) fn revoke(ctx: &Ctx, v: &TokenView) -> Response {
    let base = &ctx.base;
    let body = html! {
        h1 { "Revoke “" (v.name) "”?" }
        p.notice.warning {
            "Anything using this token is refused from now on. This cannot be undone: "
            "to pause it instead, disable it."
        }
        form method="post" action={ (base) "/" (v.id) "/revoke" } {
            (csrf(ctx))
            div.actions {
                button.danger type="submit" { "Revoke token" }
                a.button href={ (base) "/" (v.id) } { "Cancel" }
            }
        }
    };
    page(Some(ctx), StatusCode::OK, "Revoke token", body)
}
