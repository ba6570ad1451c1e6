//! Job queues and jobs, the job queue worker of each running instance, the queue autoscaler and
//! scheduled scaling, all on the world's clock (real or virtual).
//!
//! - A job is `pending` until a worker takes it: the worker of a running, ready instance of a
//!   group connected to the queue (`queue_connection`) takes the oldest pending job, posts its
//!   input to the instance's fake server at the connection's path and returns the answer after
//!   [`World::job_seconds`]. One job at a time per instance, as SaladCloud's worker does.
//! - An instance that stops, is reallocated or interrupted while it runs a job fails that
//!   attempt; a job is tried at most [`MAX_ATTEMPTS`] times, then `failed` with the last error.
//! - The queue autoscaler sets `replicas` to `ceil(jobs / desired_queue_length)` within
//!   `[min_replicas, max_replicas]` at each polling period, moving at most the per-minute rates.
//! - With `scheduled-scaling-enabled`, each `scaling-actions` cron (five fields, UTC) sets
//!   `replicas` when it fires.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiError, Group, InstState, World, rfc3339};
use crate::gateway;

/// Attempts per job (interruptions count).
pub const MAX_ATTEMPTS: u32 = 3;
/// Largest job output SaladCloud returns (10 MB).
pub const MAX_OUTPUT_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Queue {
    id: Uuid,
    name: String,
    display_name: String,
    description: String,
    create_time: Timestamp,
    update_time: Timestamp,
    jobs: Vec<Job>,
}

#[derive(Debug, Clone)]
struct Job {
    id: Uuid,
    input: Value,
    metadata: Option<Value>,
    webhook: Option<String>,
    output: Option<Value>,
    status: &'static str,
    events: Vec<(&'static str, Timestamp)>,
    attempts: u32,
    /// While running: the group, the instance, when it started and when the answer is ready.
    running: Option<(String, Uuid, Instant, Instant)>,
    create_time: Timestamp,
    update_time: Timestamp,
}

impl Job {
    fn to_json(&self) -> Value {
        let mut o = json!({
            "id": self.id,
            "input": self.input,
            "status": self.status,
            "events": self.events.iter().map(|(a, t)| json!({"action": a, "time": rfc3339(*t)})).collect::<Vec<_>>(),
            "create_time": rfc3339(self.create_time),
            "update_time": rfc3339(self.update_time),
        });
        if let Some(m) = &self.metadata {
            o["metadata"] = m.clone();
        }
        if let Some(w) = &self.webhook {
            o["webhook"] = json!(w);
        }
        if let Some(out) = &self.output {
            o["output"] = out.clone();
        }
        o
    }

    fn event(&mut self, action: &'static str, at: Timestamp) {
        self.events.push((action, at));
        self.update_time = at;
    }
}

fn queue_not_found(project: &str, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "The queue `{name}` does not exist in project `{project}`."
    ))
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    (2..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn valid_display_name(n: &str) -> bool {
    (2..=63).contains(&n.len())
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b" ,-.".contains(&c))
}

/// `GET …/queues/{name}` shape; `groups` are the connected groups' JSON.
fn queue_json(q: &Queue, groups: Vec<Value>) -> Value {
    let waiting = q.jobs.iter().filter(|j| j.status == "pending").count();
    json!({
        "id": q.id,
        "name": q.name,
        "display_name": q.display_name,
        "description": q.description,
        "container_groups": groups,
        "current_queue_length": waiting,
        "create_time": rfc3339(q.create_time),
        "update_time": rfc3339(q.update_time),
    })
}

fn connection(g: &Group) -> Option<(&str, &str, u64)> {
    let c = g.spec.get("queue_connection")?;
    Some((
        c["queue_name"].as_str()?,
        c["path"].as_str()?,
        c["port"].as_u64()?,
    ))
}

impl World {
    fn queues_of(&self, org: &str, project: &str) -> Option<&BTreeMap<String, Queue>> {
        self.queues.get(&(org.to_owned(), project.to_owned()))
    }

    fn queue(&self, org: &str, project: &str, name: &str) -> Result<&Queue, ApiError> {
        self.queues_of(org, project)
            .and_then(|q| q.get(name))
            .ok_or_else(|| queue_not_found(project, name))
    }

    fn queue_mut(&mut self, org: &str, project: &str, name: &str) -> Result<&mut Queue, ApiError> {
        self.queues
            .get_mut(&(org.to_owned(), project.to_owned()))
            .and_then(|q| q.get_mut(name))
            .ok_or_else(|| queue_not_found(project, name))
    }

    /// Does queue `name` exist (a group may connect to it)?
    pub(crate) fn queue_exists(&self, org: &str, project: &str, name: &str) -> bool {
        self.queue(org, project, name).is_ok()
    }

    fn connected_groups_json(
        &self,
        org: &str,
        project: &str,
        name: &str,
        now: Instant,
    ) -> Vec<Value> {
        let t = self.timings;
        self.projects
            .get(&(org.to_owned(), project.to_owned()))
            .map(|p| {
                p.groups
                    .values()
                    .filter(|g| connection(g).is_some_and(|(q, _, _)| q == name))
                    .map(|g| g.to_json(&t, now))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn list_queues(&self, org: &str, project: &str, now: Instant) -> Value {
        let items: Vec<Value> = self
            .queues_of(org, project)
            .map(|qs| {
                qs.values()
                    .map(|q| queue_json(q, self.connected_groups_json(org, project, &q.name, now)))
                    .collect()
            })
            .unwrap_or_default();
        json!({ "items": items })
    }

    pub fn get_queue(
        &self,
        org: &str,
        project: &str,
        name: &str,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let q = self.queue(org, project, name)?;
        Ok(queue_json(
            q,
            self.connected_groups_json(org, project, name, now),
        ))
    }

    pub fn create_queue(
        &mut self,
        org: &str,
        project: &str,
        body: &Value,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let name = body["name"].as_str().unwrap_or_default().to_owned();
        if !valid_name(&name) {
            return Err(ApiError::bad_request(format!(
                "name `{name}`: 2-63 lowercase letters, digits and dashes, starting with a letter and ending with a letter or digit"
            )));
        }
        let display_name = match body.get("display_name").and_then(Value::as_str) {
            Some(d) if !valid_display_name(d) => {
                return Err(ApiError::bad_request(format!(
                    "display_name `{d}`: 2-63 characters of letters, digits, spaces, commas, dashes and dots"
                )));
            }
            Some(d) => d.to_owned(),
            None => name.clone(),
        };
        let description = body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if description.chars().count() > 500 {
            return Err(ApiError::bad_request("description: at most 500 characters"));
        }
        let key = (org.to_owned(), project.to_owned());
        let queues = self.queues.entry(key).or_default();
        if queues.contains_key(&name) {
            return Err(ApiError::new(
                400,
                "name_conflict",
                "Name Conflict",
                format!("The queue name `{name}` is already used in project `{project}`."),
            ));
        }
        let ts = self.clock.ts(now);
        let q = Queue {
            id: Uuid::new_v4(),
            name: name.clone(),
            display_name,
            description: description.to_owned(),
            create_time: ts,
            update_time: ts,
            jobs: Vec::new(),
        };
        let out = queue_json(&q, Vec::new());
        queues.insert(name, q);
        Ok(out)
    }

    pub fn update_queue(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        patch: &Value,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let ts = self.clock.ts(now);
        let q = self.queue_mut(org, project, name)?;
        if let Some(d) = patch.get("display_name") {
            match d.as_str() {
                Some(d) if valid_display_name(d) => q.display_name = d.to_owned(),
                None if d.is_null() => q.display_name = q.name.clone(),
                _ => {
                    return Err(ApiError::bad_request(
                        "display_name: 2-63 characters of letters, digits, spaces, commas, dashes and dots",
                    ));
                }
            }
        }
        if let Some(d) = patch.get("description") {
            let d = d.as_str().unwrap_or_default();
            if d.chars().count() > 500 {
                return Err(ApiError::bad_request("description: at most 500 characters"));
            }
            q.description = d.to_owned();
        }
        q.update_time = ts;
        self.get_queue(org, project, name, now)
    }

    /// Deletes the queue and its jobs (the spec documents no refusal; groups connected to it
    /// keep running with nothing to take).
    pub fn delete_queue(&mut self, org: &str, project: &str, name: &str) -> Result<(), ApiError> {
        self.queue(org, project, name)?;
        if let Some(qs) = self.queues.get_mut(&(org.to_owned(), project.to_owned())) {
            qs.remove(name);
        }
        Ok(())
    }

    pub fn create_job(
        &mut self,
        org: &str,
        project: &str,
        queue: &str,
        body: &Value,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let ts = self.clock.ts(now);
        let Some(input) = body.get("input").filter(|i| !i.is_null()) else {
            return Err(ApiError::bad_request(
                "input is required: the JSON the worker posts to the server",
            ));
        };
        if serde_json::to_vec(input).map_or(0, |v| v.len()) > MAX_OUTPUT_BYTES {
            return Err(ApiError::bad_request("input: at most 10 MB"));
        }
        let metadata = body.get("metadata").cloned().filter(|m| !m.is_null());
        if metadata
            .as_ref()
            .is_some_and(|m| m.as_object().is_none_or(|o| o.len() > 20))
        {
            return Err(ApiError::bad_request(
                "metadata: an object of at most 20 properties",
            ));
        }
        let webhook = body
            .get("webhook")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let q = self.queue_mut(org, project, queue)?;
        let mut job = Job {
            id: Uuid::new_v4(),
            input: input.clone(),
            metadata,
            webhook,
            output: None,
            status: "pending",
            events: Vec::new(),
            attempts: 0,
            running: None,
            create_time: ts,
            update_time: ts,
        };
        job.event("created", ts);
        let out = job.to_json();
        q.jobs.push(job);
        q.update_time = ts;
        Ok(out)
    }

    pub fn get_job(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        id: &str,
    ) -> Result<Value, ApiError> {
        self.queue(org, project, queue)?
            .jobs
            .iter()
            .find(|j| j.id.to_string() == id)
            .map(Job::to_json)
            .ok_or_else(|| {
                ApiError::not_found(format!("The job `{id}` does not exist in queue `{queue}`."))
            })
    }

    /// Newest first, `page` from 1, `page_size` 1-100 (default 100).
    pub fn list_jobs(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        page: u32,
        page_size: u32,
    ) -> Result<Value, ApiError> {
        if page == 0 || !(1..=100).contains(&page_size) {
            return Err(ApiError::bad_request(
                "page starts at 1; page_size is 1-100",
            ));
        }
        let q = self.queue(org, project, queue)?;
        let items: Vec<Value> = q
            .jobs
            .iter()
            .rev()
            .skip(((page - 1) * page_size) as usize)
            .take(page_size as usize)
            .map(Job::to_json)
            .collect();
        Ok(json!({ "items": items }))
    }

    /// Cancels a job that has not ended.
    pub fn delete_job(
        &mut self,
        org: &str,
        project: &str,
        queue: &str,
        id: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let ts = self.clock.ts(now);
        let q = self.queue_mut(org, project, queue)?;
        let job = q
            .jobs
            .iter_mut()
            .find(|j| j.id.to_string() == id)
            .ok_or_else(|| {
                ApiError::not_found(format!("The job `{id}` does not exist in queue `{queue}`."))
            })?;
        if matches!(job.status, "pending" | "running") {
            job.status = "cancelled";
            job.running = None;
            job.event("cancelled", ts);
        }
        Ok(())
    }

    /// Moves jobs, workers, the queue autoscaler and scheduled scaling up to `now`.
    pub(crate) fn advance_queues(&mut self, now: Instant) {
        let t = self.timings;
        let job_time = self.job_seconds;
        let clock = self.clock;
        for ((org, project), p) in self.projects.iter_mut() {
            for g in p.groups.values_mut() {
                scheduled_scaling(g, now);
            }
            let Some(queues) = self.queues.get_mut(&(org.clone(), project.clone())) else {
                continue;
            };
            for q in queues.values_mut() {
                // Workers, in time order: finish what is due, fail what lost its instance,
                // hand pending jobs to idle ready instances (at the moment they became free).
                let connected: Vec<&Group> = p
                    .groups
                    .values()
                    .filter(|g| {
                        connection(g).is_some_and(|(n, _, _)| n == q.name) && g.deleting.is_none()
                    })
                    .collect();
                // (free from, group, instance, comfyui-api, job path, running since)
                let mut free: Vec<(Instant, String, Uuid, bool, String, Instant)> = Vec::new();
                for g in &connected {
                    let (_, path, _) = connection(g).expect("filtered");
                    let comfy = super::serves_comfyui_api(&g.spec);
                    for i in g.instances.iter() {
                        if i.state == InstState::Running && g.is_ready(i, &t, now) {
                            let ready_at = g.ready_at(i, &t).unwrap_or(now).min(now);
                            free.push((
                                ready_at,
                                g.name.clone(),
                                i.id,
                                comfy,
                                path.to_owned(),
                                i.since,
                            ));
                        }
                    }
                }
                for job in q.jobs.iter_mut().filter(|j| j.status == "running") {
                    let (group, inst, started, until) =
                        job.running.clone().expect("running has a worker");
                    // The same instance, running since before the job started (an
                    // interrupted or restarted instance lost the job).
                    let slot = free
                        .iter()
                        .position(|f| f.1 == group && f.2 == inst && f.5 <= started);
                    match slot {
                        None => {
                            // Its instance went away: the attempt fails.
                            let at = clock.ts(now);
                            job.running = None;
                            if job.attempts >= MAX_ATTEMPTS {
                                job.status = "failed";
                                job.output = Some(
                                    json!({"error": format!("instance {inst} of `{group}` stopped while running the job (attempt {} of {MAX_ATTEMPTS})", job.attempts)}),
                                );
                                job.event("failed", at);
                            } else {
                                job.status = "pending";
                            }
                        }
                        Some(k) if until <= now => {
                            let (_, _, _, comfy, path, _) = free[k].clone();
                            finish(job, comfy, &path, clock.ts(until));
                            free[k].0 = until;
                        }
                        Some(k) => {
                            // Busy until then.
                            free.remove(k);
                        }
                    }
                }
                loop {
                    free.sort_by_key(|f| f.0);
                    let Some(job) = q.jobs.iter_mut().find(|j| j.status == "pending") else {
                        break;
                    };
                    let Some(slot) = free.first().cloned() else {
                        break;
                    };
                    let start = slot.0.max(clock_instant(job.create_time, clock, now));
                    if start > now {
                        break;
                    }
                    job.attempts += 1;
                    job.status = "running";
                    job.event("started", clock.ts(start));
                    let until = start + job_time;
                    job.running = Some((slot.1.clone(), slot.2, start, until));
                    if until <= now {
                        finish(job, slot.3, &slot.4, clock.ts(until));
                        free[0].0 = until;
                    } else {
                        free.remove(0);
                    }
                }
                let waiting = q
                    .jobs
                    .iter()
                    .filter(|j| matches!(j.status, "pending" | "running"))
                    .count() as u64;
                for g in p
                    .groups
                    .values_mut()
                    .filter(|g| connection(g).is_some_and(|(n, _, _)| n == q.name))
                {
                    autoscale(g, waiting, now);
                }
            }
        }
    }
}

/// The instant of a timestamp on the world's clock (clamped to `now`).
fn clock_instant(ts: Timestamp, clock: super::Clock, now: Instant) -> Instant {
    let ahead = clock.ts(now).duration_since(ts);
    let ahead = Duration::try_from(ahead).unwrap_or_default();
    now.checked_sub(ahead).unwrap_or(now)
}

fn finish(job: &mut Job, comfy: bool, path: &str, at: Timestamp) {
    job.running = None;
    match gateway::job_answer(comfy, path, &job.input) {
        Ok(out) if serde_json::to_vec(&out).map_or(0, |v| v.len()) <= MAX_OUTPUT_BYTES => {
            job.status = "succeeded";
            job.output = Some(out);
            job.event("succeeded", at);
        }
        Ok(_) => {
            job.status = "failed";
            job.output = Some(json!({"error": "the answer is larger than 10 MB"}));
            job.event("failed", at);
        }
        Err(e) if job.attempts >= MAX_ATTEMPTS => {
            job.status = "failed";
            job.output = Some(json!({"error": e}));
            job.event("failed", at);
        }
        Err(_) => job.status = "pending",
    }
}

/// The queue autoscaler of `g`, at its polling period.
fn autoscale(g: &mut Group, jobs: u64, now: Instant) {
    let Some(a) = g
        .spec
        .get("queue_autoscaler")
        .filter(|a| a.is_object())
        .cloned()
    else {
        return;
    };
    let period = Duration::from_secs(a["polling_period"].as_u64().unwrap_or(30).clamp(15, 1800));
    if g.autoscaled_at.is_some_and(|at| now < at + period) {
        return;
    }
    let since = g.autoscaled_at.map_or(period, |at| now - at);
    g.autoscaled_at = Some(now);
    let desired = a["desired_queue_length"].as_u64().unwrap_or(1).max(1);
    let min = a["min_replicas"].as_u64().unwrap_or(0);
    let max = a["max_replicas"].as_u64().unwrap_or(1).max(min);
    let want = jobs.div_ceil(desired).clamp(min, max);
    let have = u64::from(g.replicas());
    let minutes = (since.as_secs_f64() / 60.0).max(1.0);
    let rate = |k: &str| {
        a[k].as_u64()
            .map_or(u64::MAX, |r| (r as f64 * minutes).ceil() as u64)
    };
    let next = if want > have {
        have + (want - have).min(rate("max_upscale_per_minute"))
    } else {
        have - (have - want).min(rate("max_downscale_per_minute"))
    };
    if next != have {
        g.spec["replicas"] = json!(next);
        g.reconcile_replicas(now);
    }
}

/// Scheduled scaling: the newest action whose cron fired since the last look sets replicas.
fn scheduled_scaling(g: &mut Group, now: Instant) {
    if g.spec["scheduled-scaling-enabled"].as_bool() != Some(true) {
        g.schedule_checked = None;
        return;
    }
    let Some(actions) = g.spec["scaling-actions"].as_array().cloned() else {
        return;
    };
    let from = g.schedule_checked.unwrap_or(now);
    g.schedule_checked = Some(now);
    let (a, b) = (g.clock.ts(from), g.clock.ts(now));
    // Minute by minute through (a, b], at most eight days back.
    let mut minute = (b.as_second() / 60).min(a.as_second() / 60 + 8 * 24 * 60);
    let first = a.as_second() / 60;
    let mut fired = None;
    while minute > first && fired.is_none() {
        let at = Timestamp::from_second(minute * 60).unwrap_or(b);
        fired = actions.iter().rev().find(|act| {
            act["schedule"]
                .as_str()
                .is_some_and(|c| cron_matches(c, at))
        });
        minute -= 1;
    }
    if let Some(act) = fired
        && let Some(r) = act["replicas"].as_u64()
        && r != u64::from(g.replicas())
    {
        g.spec["replicas"] = json!(r);
        g.reconcile_replicas(now);
    }
}

/// Does the five-field cron expression fire at the minute `at` (UTC)?
pub(crate) fn cron_matches(expr: &str, at: Timestamp) -> bool {
    let dt = at.to_zoned(jiff::tz::TimeZone::UTC);
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return false;
    }
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let dow = dt.weekday().to_sunday_zero_offset() as u32;
    let values = [
        (dt.minute() as u32, 0, 59, &[][..]),
        (dt.hour() as u32, 0, 23, &[][..]),
        (dt.day() as u32, 1, 31, &[][..]),
        (dt.month() as u32, 1, 12, &MONTHS[..]),
        (dow, 0, 7, &DAYS[..]),
    ];
    let matches = |field: &str, (v, lo, hi, names): (u32, u32, u32, &[&str]), dow: bool| {
        let parse = |s: &str| -> Option<u32> {
            s.parse().ok().or_else(|| {
                names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(s))
                    .map(|i| i as u32 + if names.len() == 12 { 1 } else { 0 })
            })
        };
        field.split(',').any(|item| {
            let (range, step) = item
                .split_once('/')
                .map_or((item, 1), |(r, s)| (r, s.parse().unwrap_or(0)));
            if step == 0 {
                return false;
            }
            let (a, b) = if range == "*" {
                (lo, hi)
            } else if let Some((a, b)) = range.split_once('-') {
                match (parse(a), parse(b)) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return false,
                }
            } else {
                match parse(range) {
                    Some(a) if item.contains('/') => (a, hi),
                    Some(a) => (a, a),
                    None => return false,
                }
            };
            (a..=b)
                .step_by(step as usize)
                .any(|x| x == v || (dow && x == 7 && v == 0))
        })
    };
    fields
        .iter()
        .zip(values)
        .enumerate()
        .all(|(i, (f, v))| matches(f, v, i == 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn cron_fires_on_its_minutes() {
        // 2026-12-02 was a Wednesday.
        assert!(cron_matches("0 8 * * 1-5", at("2026-12-02T08:00:00Z")));
        assert!(!cron_matches("0 8 * * 1-5", at("2026-12-02T08:01:00Z")));
        assert!(
            !cron_matches("0 8 * * 1-5", at("2026-12-06T08:00:00Z")),
            "Sunday"
        );
        assert!(cron_matches("0 8 * * SUN", at("2026-12-06T08:00:00Z")));
        assert!(
            cron_matches("0 8 * * 7", at("2026-12-06T08:00:00Z")),
            "7 is Sunday too"
        );
        assert!(cron_matches("*/15 * * * *", at("2026-12-02T13:45:00Z")));
        assert!(!cron_matches("*/15 * * * *", at("2026-12-02T13:46:00Z")));
        assert!(cron_matches("30 22 1 DEC *", at("2026-12-01T22:30:00Z")));
        assert!(!cron_matches("30 22 1 JAN *", at("2026-12-01T22:30:00Z")));
        assert!(!cron_matches("bad", at("2026-12-01T22:30:00Z")));
    }
}
