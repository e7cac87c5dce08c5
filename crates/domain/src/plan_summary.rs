//! The shared plan-of-care summary (reference §5.4; issue 5 item 6): a Composition whose
//! narrative a family or a new clinic can read — who is on the team, what work is open, what is
//! overdue — built from the plan, its CareTeams and its Tasks as stored. It heads the `collection`
//! Bundle of `GET [base]/CarePlan/[id]/$summary`.
//!
//! Pure: the caller supplies the resources, their full URLs and the current time. Every piece of
//! client text is escaped for XHTML (http://hl7.org/fhir/R4/narrative.html).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use crate::instant;
use crate::search::dates;
use crate::workflow::TaskStatus;
use crate::worklist::Due;

/// One resource of the summary: its Bundle `fullUrl` and its JSON.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub full_url: &'a str,
    pub resource: &'a Value,
}

/// What the summary is made of.
#[derive(Debug, Clone)]
pub struct PlanSummary<'a> {
    pub plan: Entry<'a>,
    pub teams: Vec<Entry<'a>>,
    /// The plan's Goals (`CarePlan.goal`); with none, the narrative has no Goals section.
    pub goals: Vec<Entry<'a>>,
    /// The Tasks based on the plan and their sub-tasks, in any order.
    pub tasks: Vec<Entry<'a>>,
    /// The Provenance of the plan, its teams and its Tasks, in any order.
    pub provenance: Vec<Entry<'a>>,
    /// The current time (epoch ms): what is overdue, which memberships have ended.
    pub now: i64,
}

/// One section of the narrative: a title, its XHTML and the resources it speaks of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: &'static str,
    /// The section's content, without the enclosing `div`.
    pub xhtml: String,
    pub entries: Vec<String>,
}

/// How many Provenance records the narrative lists (the Bundle carries them all).
const RECENT_CHANGES: usize = 10;

/// The XHTML namespace every narrative `div` declares.
const XHTML: &str = "http://www.w3.org/1999/xhtml";

impl PlanSummary<'_> {
    /// The sections: care team, open work, overdue, recent changes.
    pub fn sections(&self) -> Vec<Section> {
        let open = self.open_tasks();
        let overdue: Vec<&OpenTask<'_>> = open.iter().filter(|t| t.overdue).collect();
        let changes = self.recent_changes();
        let mut sections = vec![Section {
            title: "Care team",
            xhtml: self.team_xhtml(),
            entries: self.teams.iter().map(|t| t.full_url.to_owned()).collect(),
        }];
        if !self.goals.is_empty() {
            sections.push(Section {
                title: "Goals",
                xhtml: self.goals_xhtml(),
                entries: self.goals.iter().map(|g| g.full_url.to_owned()).collect(),
            });
        }
        sections.extend([
            Section {
                title: "Open work",
                xhtml: self.open_xhtml(&open),
                entries: open.iter().map(|t| t.entry.full_url.to_owned()).collect(),
            },
            Section {
                title: "Overdue",
                xhtml: overdue_xhtml(&overdue),
                entries: overdue.iter().map(|t| t.entry.full_url.to_owned()).collect(),
            },
            Section {
                title: "Recent changes",
                xhtml: self.changes_xhtml(&changes),
                entries: changes.iter().map(|p| p.full_url.to_owned()).collect(),
            },
        ]);
        sections
    }

    /// What the family and the team work toward: each Goal's description, status and targets.
    fn goals_xhtml(&self) -> String {
        let mut out = String::from("<ul>");
        for goal in &self.goals {
            let goal = goal.resource;
            let description = goal.get("description").map(concept_label).filter(|d| !d.is_empty());
            let _ = write!(out, "<li>{}", escape(description.as_deref().unwrap_or("(no description)")));
            let mut facts: Vec<String> = text(goal, "lifecycleStatus").map(str::to_owned).into_iter().collect();
            facts.extend(goal.get("achievementStatus").map(concept_label).filter(|a| !a.is_empty()));
            let targets = goal.get("target").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            facts.extend(targets.iter().filter_map(|t| text(t, "dueDate")).map(|due| format!("due {due}")));
            if !facts.is_empty() {
                let _ = write!(out, " ({})", escape(&facts.join("; ")));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
        out
    }

    /// The latest Provenance records, newest first (by `recorded`, an instant in any offset).
    fn recent_changes(&self) -> Vec<Entry<'_>> {
        let mut changes: Vec<(i64, Entry<'_>)> = self
            .provenance
            .iter()
            .map(|p| (text(p.resource, "recorded").and_then(dates::range).map_or(i64::MIN, |(low, _)| low), *p))
            .collect();
        changes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.full_url.cmp(b.1.full_url)));
        changes.into_iter().take(RECENT_CHANGES).map(|(_, p)| p).collect()
    }

    fn changes_xhtml(&self, shown: &[Entry<'_>]) -> String {
        if shown.is_empty() {
            return "<p>No changes are recorded.</p>".to_owned();
        }
        let mut out = format!("<p>{} recorded changes", self.provenance.len());
        if shown.len() < self.provenance.len() {
            let _ = write!(out, "; the latest {}", shown.len());
        }
        out.push_str(":</p><ul>");
        for entry in shown {
            let p = entry.resource;
            let activity = p.get("activity").map(concept_label).filter(|a| !a.is_empty());
            let targets: Vec<String> = p
                .get("target")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let label = reference_label(t);
                    label.split("/_history/").next().unwrap_or_default().to_owned()
                })
                .collect();
            let agents: Vec<String> = p
                .get("agent")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|a| a.get("who").map(reference_label))
                .collect();
            let _ = write!(
                out,
                "<li>{}: {} {}",
                escape(text(p, "recorded").unwrap_or("(no time)")),
                escape(activity.as_deref().unwrap_or("change")),
                escape(&targets.join(", "))
            );
            if !agents.is_empty() {
                let _ = write!(out, " by {}", escape(&agents.join(", ")));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
        out
    }

    /// The whole narrative: a heading for the plan, then every section under its title.
    pub fn narrative(&self) -> String {
        let mut out = format!("<div xmlns=\"{XHTML}\">");
        out.push_str(&self.plan_xhtml());
        for section in self.sections() {
            let _ = write!(out, "<h3>{}</h3>{}", section.title, section.xhtml);
        }
        out.push_str("</div>");
        out
    }

    /// The Composition heading the summary Bundle: status `final`, LOINC 18776-5 "Plan of care
    /// note", the plan's subject, dated `now`, authored by this service, with the narrative as
    /// its text and one section per `Section` referring to the resources by `fullUrl`.
    pub fn composition(&self) -> Value {
        let plan = self.plan.resource;
        let mut composition = json!({
            "resourceType": "Composition",
            "status": "final",
            "type": { "coding": [{ "system": "http://loinc.org", "code": "18776-5", "display": "Plan of care note" }] },
        });
        if let Some(subject) = plan.get("subject") {
            composition["subject"] = subject.clone();
        }
        composition["date"] = json!(instant::to_fhir(self.now));
        composition["author"] = json!([{ "display": "careplan (generated summary)" }]);
        composition["title"] = json!(format!("Summary of {}", plan_title(plan)));
        composition["text"] = json!({ "status": "generated", "div": self.narrative() });
        let mut sections = vec![json!({
            "title": "Care plan",
            "text": { "status": "generated", "div": format!("<div xmlns=\"{XHTML}\">{}</div>", self.plan_xhtml()) },
            "entry": [{ "reference": self.plan.full_url }],
        })];
        sections.extend(self.sections().into_iter().map(|s| {
            let mut section = json!({
                "title": s.title,
                "text": { "status": "generated", "div": format!("<div xmlns=\"{XHTML}\">{}</div>", s.xhtml) },
            });
            if !s.entries.is_empty() {
                section["entry"] = s.entries.iter().map(|u| json!({ "reference": u })).collect();
            }
            section
        }));
        composition["section"] = Value::Array(sections);
        composition
    }

    fn plan_xhtml(&self) -> String {
        let plan = self.plan.resource;
        let mut out = format!("<h2>{}</h2><p>", escape(&plan_title(plan)));
        let facts = [
            ("Status", text(plan, "status").map(str::to_owned)),
            ("For", plan.get("subject").map(reference_label)),
            ("Period", plan.get("period").map(period_label)),
        ];
        let mut first = true;
        for (label, value) in facts {
            if let Some(value) = value {
                let _ = write!(out, "{}{label}: {}", if first { "" } else { "<br/>" }, escape(&value));
                first = false;
            }
        }
        out.push_str("</p>");
        if let Some(description) = text(plan, "description") {
            let _ = write!(out, "<p>{}</p>", escape(description));
        }
        out
    }

    fn team_xhtml(&self) -> String {
        if self.teams.is_empty() {
            return "<p>No care team is recorded for this plan.</p>".to_owned();
        }
        let mut out = String::new();
        for team in &self.teams {
            let team = team.resource;
            let name = text(team, "name").unwrap_or("Care team");
            let _ = write!(out, "<p><b>{}</b>", escape(name));
            if let Some(status) = text(team, "status") {
                let _ = write!(out, " ({})", escape(status));
            }
            out.push_str("</p>");
            let participants = team.get("participant").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            if participants.is_empty() {
                out.push_str("<p>No participants.</p>");
                continue;
            }
            out.push_str("<ul>");
            for participant in participants {
                let member = participant.get("member").map_or_else(|| "(unnamed member)".to_owned(), reference_label);
                let _ = write!(out, "<li>{}", escape(&member));
                let roles = participant.get("role").map(concepts_label).unwrap_or_default();
                if !roles.is_empty() {
                    let _ = write!(out, " — {}", escape(&roles));
                }
                if let Some(period) = participant.get("period") {
                    let ended = period_end(period).is_some_and(|(_, high)| high < self.now);
                    let _ = write!(out, " ({}{})", escape(&period_label(period)), if ended { "; ended" } else { "" });
                }
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
        out
    }

    /// Open Tasks, soonest due first (no due date last), then by what they are about.
    fn open_tasks(&self) -> Vec<OpenTask<'_>> {
        let mut open: Vec<OpenTask<'_>> = self
            .tasks
            .iter()
            .filter_map(|entry| {
                let due = Due::of(entry.resource);
                let status = due.status.filter(|s| s.is_open())?;
                Some(OpenTask { entry: *entry, status, due, overdue: due.is_overdue(self.now) })
            })
            .collect();
        open.sort_by(|a, b| {
            let key = |t: &OpenTask<'_>| (t.due.due.map_or(i64::MAX, |(_, high)| high), task_label(t.entry.resource));
            key(a).cmp(&key(b))
        });
        open
    }

    fn open_xhtml(&self, open: &[OpenTask<'_>]) -> String {
        let mut out = String::new();
        if open.is_empty() {
            out.push_str("<p>No open work.</p>");
        }
        for status in TaskStatus::OPEN {
            let of_status: Vec<&OpenTask<'_>> = open.iter().filter(|t| t.status == status).collect();
            if of_status.is_empty() {
                continue;
            }
            let _ = write!(out, "<p><b>{}</b> ({})</p><ul>", status_label(status), of_status.len());
            for task in of_status {
                let _ = write!(out, "<li>{}</li>", task.line());
            }
            out.push_str("</ul>");
        }
        let mut closed: BTreeMap<TaskStatus, usize> = BTreeMap::new();
        for task in &self.tasks {
            if let Some(status) = Due::of(task.resource).status.filter(|s| !s.is_open()) {
                *closed.entry(status).or_default() += 1;
            }
        }
        if !closed.is_empty() {
            let counts: Vec<String> = closed.iter().map(|(s, n)| format!("{n} {}", s.as_str())).collect();
            let _ = write!(out, "<p>Not open: {}.</p>", counts.join(", "));
        }
        out
    }
}

/// An open Task as the summary lists it.
struct OpenTask<'a> {
    entry: Entry<'a>,
    status: TaskStatus,
    due: Due,
    overdue: bool,
}

impl OpenTask<'_> {
    /// `what — owner X; due D (overdue); part of Task/y`, escaped.
    fn line(&self) -> String {
        let task = self.entry.resource;
        let owner = task.get("owner").map_or_else(|| "unassigned".to_owned(), reference_label);
        let due = task
            .get("restriction")
            .and_then(|r| r.get("period"))
            .and_then(|p| text(p, "end"))
            .map_or_else(|| "no due date".to_owned(), |end| format!("due {end}"));
        let mut line = format!("{} — owner {}; {}", escape(&task_label(task)), escape(&owner), escape(&due));
        if self.overdue {
            line.push_str(" <b>(overdue)</b>");
        }
        let parents: Vec<String> =
            task.get("partOf").and_then(Value::as_array).into_iter().flatten().map(reference_label).collect();
        if !parents.is_empty() {
            let _ = write!(line, "; part of {}", escape(&parents.join(", ")));
        }
        line
    }
}

fn overdue_xhtml(overdue: &[&OpenTask<'_>]) -> String {
    if overdue.is_empty() {
        return "<p>Nothing is overdue.</p>".to_owned();
    }
    let mut out = format!("<p>{} overdue:</p><ul>", overdue.len());
    for task in overdue {
        let _ = write!(out, "<li>{} ({})</li>", task.line(), status_label(task.status));
    }
    out.push_str("</ul>");
    out
}

/// Escape text for XHTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn text<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

fn plan_title(plan: &Value) -> String {
    text(plan, "title").unwrap_or("Care plan").to_owned()
}

/// What a Task is about: its description, else its code's text, display or code.
fn task_label(task: &Value) -> String {
    if let Some(description) = text(task, "description") {
        return description.to_owned();
    }
    let code = task.get("code").map(concept_label).unwrap_or_default();
    if code.is_empty() {
        format!("Task {}", text(task, "id").unwrap_or_default())
    } else {
        code
    }
}

/// A Reference as a reader knows it: `display`, else the reference, else the identifier.
fn reference_label(reference: &Value) -> String {
    if let Some(display) = text(reference, "display") {
        return display.to_owned();
    }
    if let Some(literal) = text(reference, "reference") {
        return literal.to_owned();
    }
    match reference.get("identifier").and_then(|i| text(i, "value")) {
        Some(value) => format!("identifier {value}"),
        None => "(no reference)".to_owned(),
    }
}

/// A CodeableConcept's `text`, else its codings' displays (or codes).
fn concept_label(concept: &Value) -> String {
    if let Some(text) = text(concept, "text") {
        return text.to_owned();
    }
    let codings = concept.get("coding").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let labels: Vec<&str> = codings.iter().filter_map(|c| text(c, "display").or_else(|| text(c, "code"))).collect();
    labels.join(" / ")
}

/// Several CodeableConcepts (participant roles), comma-separated.
fn concepts_label(concepts: &Value) -> String {
    let items = concepts.as_array().map(Vec::as_slice).unwrap_or_default();
    let labels: Vec<String> = items.iter().map(concept_label).filter(|l| !l.is_empty()).collect();
    labels.join(", ")
}

/// `since S`, `until E` or `S to E`.
fn period_label(period: &Value) -> String {
    match (text(period, "start"), text(period, "end")) {
        (Some(start), Some(end)) => format!("{start} to {end}"),
        (Some(start), None) => format!("since {start}"),
        (None, Some(end)) => format!("until {end}"),
        (None, None) => "no dates".to_owned(),
    }
}

fn period_end(period: &Value) -> Option<(i64, i64)> {
    text(period, "end").and_then(dates::range)
}

fn status_label(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Draft => "Draft",
        TaskStatus::Requested => "Requested",
        TaskStatus::Received => "Received",
        TaskStatus::Accepted => "Accepted",
        TaskStatus::Rejected => "Rejected",
        TaskStatus::Ready => "Ready",
        TaskStatus::Cancelled => "Cancelled",
        TaskStatus::InProgress => "In progress",
        TaskStatus::OnHold => "On hold",
        TaskStatus::Failed => "Failed",
        TaskStatus::Completed => "Completed",
        TaskStatus::EnteredInError => "Entered in error",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 2026-03-05T00:00:00Z.
    const NOW: i64 = 1_772_668_800_000;

    fn plan() -> Value {
        json!({"resourceType": "CarePlan", "id": "plan", "status": "active", "intent": "plan",
               "title": "Amy's shared plan", "subject": {"reference": "Patient/amy", "display": "Amy <A.> O'Neil"},
               "period": {"start": "2026-01-01"}})
    }

    fn team() -> Value {
        json!({"resourceType": "CareTeam", "id": "team", "status": "active", "name": "Complex care & co",
               "participant": [
                   {"role": [{"text": "Care coordinator"}], "member": {"reference": "Practitioner/lee", "display": "Nurse Lee"},
                    "period": {"start": "2026-01-02"}},
                   {"role": [{"coding": [{"system": "http://snomed.info/sct", "code": "133932002", "display": "Caregiver (person)"}]}],
                    "member": {"reference": "RelatedPerson/mother"}},
                   {"role": [{"text": "Social worker"}], "member": {"reference": "Practitioner/diaz"},
                    "period": {"start": "2026-01-02", "end": "2026-02-01"}}]})
    }

    fn task(id: &str, status: &str, description: &str, end: Option<&str>) -> Value {
        let mut task = json!({"resourceType": "Task", "id": id, "status": status, "intent": "order",
                              "description": description, "owner": {"reference": "Practitioner/lee"}});
        if let Some(end) = end {
            task["restriction"] = json!({"period": {"end": end}});
        }
        task
    }

    /// Checks the narrative of `tasks` (with the plan and team above) against `expect`, one
    /// element per line: the text is split before every `<p>`, `<li>`, `<h2>` and `<h3>`.
    fn check(teams: &[Value], tasks: &[Value], expect: &str) {
        check_with(teams, tasks, &[], expect);
    }

    /// `check`, with Provenance records.
    fn check_with(teams: &[Value], tasks: &[Value], provenance: &[Value], expect: &str) {
        let plan = plan();
        let urls: Vec<String> = (0..tasks.len()).map(|i| format!("urn:task:{i}")).collect();
        let summary = PlanSummary {
            plan: Entry { full_url: "urn:plan", resource: &plan },
            teams: teams.iter().map(|t| Entry { full_url: "urn:team", resource: t }).collect(),
            goals: Vec::new(),
            tasks: tasks.iter().zip(&urls).map(|(t, u)| Entry { full_url: u, resource: t }).collect(),
            provenance: provenance.iter().map(|p| Entry { full_url: "urn:provenance", resource: p }).collect(),
            now: NOW,
        };
        let narrative = summary.narrative();
        let mut lines = String::new();
        for piece in narrative.split_inclusive('>') {
            if ["<p>", "<li>", "<h2>", "<h3>"].iter().any(|tag| piece.ends_with(tag)) {
                let (before, tag) = piece.split_at(piece.rfind('<').unwrap_or(0));
                lines.push_str(before);
                lines.push('\n');
                lines.push_str(tag);
            } else {
                lines.push_str(piece);
            }
        }
        let actual: Vec<&str> = lines.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let expect: Vec<&str> = expect.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(actual, expect, "\nactual:\n{}\n", actual.join("\n"));
    }

    #[test]
    fn the_team_the_open_work_and_the_overdue_work_escaped() {
        check(
            &[team()],
            &[
                task("call", "requested", "Follow-up call <after> visit", Some("2026-03-01")),
                task("ride", "in-progress", "Arrange transport", Some("2026-04-01")),
                task("ins", "on-hold", "Insurance question", None),
                task("old", "completed", "Intake", Some("2026-01-10")),
                task("no", "rejected", "Home visit", Some("2026-01-10")),
                task("draft", "draft", "Someday", Some("2020")),
            ],
            r#"
                <div xmlns="http://www.w3.org/1999/xhtml">
                <h2>Amy&#39;s shared plan</h2>
                <p>Status: active<br/>For: Amy &lt;A.&gt; O&#39;Neil<br/>Period: since 2026-01-01</p>
                <h3>Care team</h3>
                <p><b>Complex care &amp; co</b> (active)</p><ul>
                <li>Nurse Lee — Care coordinator (since 2026-01-02)</li>
                <li>RelatedPerson/mother — Caregiver (person)</li>
                <li>Practitioner/diaz — Social worker (2026-01-02 to 2026-02-01; ended)</li></ul>
                <h3>Open work</h3>
                <p><b>Requested</b> (1)</p><ul>
                <li>Follow-up call &lt;after&gt; visit — owner Practitioner/lee; due 2026-03-01 <b>(overdue)</b></li></ul>
                <p><b>In progress</b> (1)</p><ul>
                <li>Arrange transport — owner Practitioner/lee; due 2026-04-01</li></ul>
                <p><b>On hold</b> (1)</p><ul>
                <li>Insurance question — owner Practitioner/lee; no due date</li></ul>
                <p>Not open: 1 draft, 1 rejected, 1 completed.</p>
                <h3>Overdue</h3>
                <p>1 overdue:</p><ul>
                <li>Follow-up call &lt;after&gt; visit — owner Practitioner/lee; due 2026-03-01 <b>(overdue)</b> (Requested)</li></ul>
                <h3>Recent changes</h3>
                <p>No changes are recorded.</p></div>
            "#,
        );
    }

    #[test]
    fn an_empty_plan_says_so() {
        check(
            &[],
            &[],
            r#"
                <div xmlns="http://www.w3.org/1999/xhtml">
                <h2>Amy&#39;s shared plan</h2>
                <p>Status: active<br/>For: Amy &lt;A.&gt; O&#39;Neil<br/>Period: since 2026-01-01</p>
                <h3>Care team</h3>
                <p>No care team is recorded for this plan.</p>
                <h3>Open work</h3>
                <p>No open work.</p>
                <h3>Overdue</h3>
                <p>Nothing is overdue.</p>
                <h3>Recent changes</h3>
                <p>No changes are recorded.</p></div>
            "#,
        );
    }

    #[test]
    fn sub_tasks_name_their_parent_and_work_is_listed_by_due_date() {
        let mut sub = task("sub", "accepted", "Book the taxi", Some("2026-03-20"));
        sub["partOf"] = json!([{"reference": "Task/ride"}]);
        let mut unowned = task("later", "accepted", "Check in", Some("2026-03-10T09:00:00Z"));
        unowned.as_object_mut().map(|t| t.remove("owner"));
        unowned.as_object_mut().map(|t| t.remove("description"));
        unowned["code"] = json!({"coding": [{"code": "check-in"}]});
        check(
            &[],
            &[sub, unowned],
            r#"
                <div xmlns="http://www.w3.org/1999/xhtml">
                <h2>Amy&#39;s shared plan</h2>
                <p>Status: active<br/>For: Amy &lt;A.&gt; O&#39;Neil<br/>Period: since 2026-01-01</p>
                <h3>Care team</h3>
                <p>No care team is recorded for this plan.</p>
                <h3>Open work</h3>
                <p><b>Accepted</b> (2)</p><ul>
                <li>check-in — owner unassigned; due 2026-03-10T09:00:00Z</li>
                <li>Book the taxi — owner Practitioner/lee; due 2026-03-20; part of Task/ride</li></ul>
                <h3>Overdue</h3>
                <p>Nothing is overdue.</p>
                <h3>Recent changes</h3>
                <p>No changes are recorded.</p></div>
            "#,
        );
    }

    #[test]
    fn recent_changes_are_the_latest_provenance_newest_first_whatever_the_offset() {
        use crate::provenance::{for_write, Activity};
        let mut provenance: Vec<Value> = (1..=11)
            .map(|day| {
                for_write(
                    &format!("Task/call/_history/{day}"),
                    &format!("2026-02-{day:02}T12:00:00Z"),
                    Activity::Update,
                    Some("Practitioner/lee"),
                )
            })
            .collect();
        // 2026-02-12T01:00:00+05:00 is 2026-02-11T20:00:00Z: the newest.
        provenance.push(for_write("CarePlan/plan/_history/2", "2026-02-12T01:00:00+05:00", Activity::Create, None));
        let mut expect = String::from(
            r#"
                <div xmlns="http://www.w3.org/1999/xhtml">
                <h2>Amy&#39;s shared plan</h2>
                <p>Status: active<br/>For: Amy &lt;A.&gt; O&#39;Neil<br/>Period: since 2026-01-01</p>
                <h3>Care team</h3>
                <p>No care team is recorded for this plan.</p>
                <h3>Open work</h3>
                <p>No open work.</p>
                <h3>Overdue</h3>
                <p>Nothing is overdue.</p>
                <h3>Recent changes</h3>
                <p>12 recorded changes; the latest 10:</p><ul>
                <li>2026-02-12T01:00:00+05:00: create CarePlan/plan by unidentified client</li>
            "#,
        );
        for day in (3..=11).rev() {
            expect.push_str(&format!("<li>2026-02-{day:02}T12:00:00Z: revise Task/call by Practitioner/lee</li>\n"));
        }
        expect = expect.trim_end().strip_suffix("</li>").map(|e| format!("{e}</li></ul></div>")).unwrap_or(expect);
        check_with(&[], &[], &provenance, &expect);
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(escape(r#"<b>"Tom" & 'Jerry'</b>"#), "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;");
        assert_eq!(escape("plain"), "plain");
    }

    /// The Composition is a valid R4 Composition (checked with the fhir-sdk model), with the plan
    /// section first and one entry per resource it speaks of.
    #[test]
    fn the_composition_is_a_valid_composition() {
        let (plan, team) = (plan(), team());
        let overdue = task("call", "requested", "Call", Some("2026-03-01"));
        let goal = json!({
            "resourceType": "Goal", "lifecycleStatus": "active",
            "achievementStatus": { "coding": [{ "code": "in-progress" }] },
            "description": { "text": "No more than one ED visit & fewer nights" },
            "subject": { "reference": "Patient/amy" }, "target": [{ "dueDate": "2027-05-24" }],
        });
        let provenance = crate::provenance::for_write(
            "Task/call/_history/1",
            "2026-03-01T10:00:00Z",
            crate::provenance::Activity::Create,
            Some("Practitioner/lee"),
        );
        let summary = PlanSummary {
            plan: Entry { full_url: "http://x/fhir/CarePlan/plan", resource: &plan },
            teams: vec![Entry { full_url: "http://x/fhir/CareTeam/team", resource: &team }],
            goals: vec![Entry { full_url: "http://x/fhir/Goal/fewer-ed-visits", resource: &goal }],
            tasks: vec![Entry { full_url: "http://x/fhir/Task/call", resource: &overdue }],
            provenance: vec![Entry { full_url: "http://x/fhir/Provenance/p", resource: &provenance }],
            now: NOW,
        };
        let composition = summary.composition();
        let model: Result<fhir_sdk::r4b::resources::Composition, _> = serde_json::from_value(composition.clone());
        assert!(model.is_ok(), "{model:?}");
        assert_eq!(composition["subject"]["reference"], "Patient/amy");
        assert_eq!(composition["date"], "2026-03-05T00:00:00.000Z");
        let titles: Vec<&str> =
            composition["section"].as_array().expect("sections").iter().filter_map(|s| s["title"].as_str()).collect();
        assert_eq!(titles, ["Care plan", "Care team", "Goals", "Open work", "Overdue", "Recent changes"]);
        let goals = &composition["section"][2];
        assert_eq!(goals["title"], "Goals");
        assert_eq!(goals["entry"][0]["reference"], "http://x/fhir/Goal/fewer-ed-visits");
        let narrative = goals["text"]["div"].as_str().expect("narrative");
        assert!(
            narrative.contains("No more than one ED visit &amp; fewer nights (active; in-progress; due 2027-05-24)"),
            "{narrative}"
        );
        assert_eq!(composition["section"][5]["entry"][0]["reference"], "http://x/fhir/Provenance/p");
        assert_eq!(composition["section"][0]["entry"][0]["reference"], "http://x/fhir/CarePlan/plan");
        assert_eq!(composition["section"][4]["entry"][0]["reference"], "http://x/fhir/Task/call");
        assert!(composition["text"]["div"].as_str().is_some_and(|d| d.starts_with("<div xmlns=")));
    }
}
