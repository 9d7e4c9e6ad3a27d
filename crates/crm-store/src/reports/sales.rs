//! Sales reports: the pipeline and how deals move through it.

use std::collections::HashMap;

use crm_model::kinds::lead::SOURCES;
use crm_model::kinds::opportunity::{LOST_REASONS, STAGES};
use rusqlite::params_from_iter;
use serde_json::{Value as Json, json};

use super::{Column, Figure, Report, ReportDef, ReportParams, Unit, date_range, keyed, ratio};
use crate::{Result, Store};

pub(super) const REPORTS: &[ReportDef] = &[
    ReportDef {
        name: "funnel",
        group: "sales",
        title: "Pipeline funnel",
        about: "Open and closed opportunities per stage: count, amount and weighted amount \
                (amount × the stage's default probability, or the deal's override)",
        run: funnel,
    },
    ReportDef {
        name: "stage-conversion",
        group: "sales",
        title: "Stage-to-stage conversion",
        about: "From the stage histories: of the deals that reached a stage (or a later one), \
                how many reached the next, and how many were lost there; by created date",
        run: stage_conversion,
    },
    ReportDef {
        name: "win-rate-by-owner",
        group: "sales",
        title: "Win rate by owner",
        about: "Closed deals per owner: won, lost, won / closed, won amount; by closed date",
        run: win_rate_by_owner,
    },
    ReportDef {
        name: "win-rate-by-team",
        group: "sales",
        title: "Win rate by team",
        about: "Closed deals of each team's members: won, lost, won / closed, won amount; \
                by closed date",
        run: win_rate_by_team,
    },
    ReportDef {
        name: "cycle-length",
        group: "sales",
        title: "Sales cycle length",
        about: "Days from created to closed_at of closed deals, won and lost: average, \
                shortest, longest (deals closed before their record was created, i.e. \
                imported history, are counted apart); by closed date",
        run: cycle_length,
    },
    ReportDef {
        name: "time-in-stage",
        group: "sales",
        title: "Time in stage",
        about: "From the stage histories' times: average days a deal stayed in each open \
                stage before moving on, and the deals in it now with their average age; by \
                created date",
        run: time_in_stage,
    },
    ReportDef {
        name: "forecast",
        group: "sales",
        title: "Weighted forecast by close month",
        about: "Per expected close month: open deals, pipeline, weighted (amount × \
                probability), commit, and won amount; by close date",
        run: forecast,
    },
    ReportDef {
        name: "lost-reasons",
        group: "sales",
        title: "Lost reasons",
        about: "Lost deals per reason: count, amount and share; by closed date",
        run: lost_reasons,
    },
    ReportDef {
        name: "lead-sources",
        group: "sales",
        title: "Lead-source effectiveness",
        about: "Per lead source: leads, converted, conversion rate, and the won deals and won \
                amount of the opportunities they were converted into; by lead created date",
        run: lead_sources,
    },
];

/// The SQL `CASE` giving a stage's default probability.
fn probability_case() -> String {
    format!(
        "CASE f_stage {} ELSE 0 END",
        STAGES
            .iter()
            .map(|s| format!(
                "WHEN '{s}' THEN {}",
                crm_model::kinds::opportunity::default_probability(s).unwrap_or(0)
            ))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn figure(key: &'static str, label: &'static str, unit: Unit, value: Json) -> Figure {
    Figure {
        key,
        label,
        unit,
        value,
    }
}

/// A float figure rounded to two decimals (days, hours), `null` when undefined.
fn round2(v: Option<f64>) -> Json {
    v.map_or(Json::Null, |v| json!((v * 100.0).round() / 100.0))
}

/// Count, amount and weighted amount per stage, every stage listed in pipeline order even when
/// empty; the date range applies to the expected close date.
fn funnel(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("f_close_date", params);
    let sql = format!(
        "SELECT f_stage, count(*), coalesce(sum(f_amount), 0), \
                coalesce(sum(f_amount * coalesce(f_probability, {probabilities}) / 100.0), 0) \
         FROM rec_opportunity WHERE archived = 0 AND f_stage IS NOT NULL{range} \
         GROUP BY f_stage",
        probabilities = probability_case()
    );
    let by_stage = keyed(store, &sql, args, |r| {
        Ok((
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, f64>(3)?,
        ))
    })?;
    let mut report = Report::new(
        def,
        vec![
            Column::new("stage", "Stage", Unit::Text),
            Column::new("count", "Deals", Unit::Count),
            Column::new("amount", "Amount", Unit::Money),
            Column::new("weighted", "Weighted", Unit::Money),
        ],
    );
    let (mut count, mut open_amount, mut open_weighted) = (0, 0, 0.0);
    let (mut won, mut lost) = (0, 0);
    for stage in STAGES {
        let (n, amount, weighted) = by_stage.get(*stage).copied().unwrap_or((0, 0, 0.0));
        count += n;
        match *stage {
            "closed_won" => won += n,
            "closed_lost" => lost += n,
            _ => {}
        }
        if !stage.starts_with("closed") {
            open_amount += amount;
            open_weighted += weighted;
        }
        report.rows.push(vec![
            json!(stage),
            json!(n),
            json!(amount),
            json!(weighted.round() as i64),
        ]);
    }
    report.summary = vec![
        Figure {
            key: "deals",
            label: "Deals",
            unit: Unit::Count,
            value: json!(count),
        },
        Figure {
            key: "open_amount",
            label: "Open pipeline",
            unit: Unit::Money,
            value: json!(open_amount),
        },
        Figure {
            key: "open_weighted",
            label: "Weighted open pipeline",
            unit: Unit::Money,
            value: json!(open_weighted.round() as i64),
        },
        Figure {
            key: "win_rate",
            label: "Win rate (won / closed)",
            unit: Unit::Ratio,
            value: ratio(won as f64, (won + lost) as f64),
        },
    ];
    Ok(report)
}

/// The pipeline stages in order, without `closed_lost` (a deal is lost *at* some stage).
const PIPELINE: &[&str] = &[
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "closed_won",
];

/// Each deal's furthest pipeline stage, read from its stage history: a deal that reached a
/// stage is counted as having passed every earlier one (deals may skip stages). For each
/// stage: the deals that reached it or a later one, how many of those reached the next, and
/// the deals lost with this as their furthest stage. The date range applies to the deal's
/// creation.
fn stage_conversion(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("o.created_at", params);
    let ranks = PIPELINE
        .iter()
        .enumerate()
        .map(|(i, s)| format!("('{s}', {i})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH ranks(stage, rank) AS (VALUES {ranks}), \
         deals AS ( \
             SELECT o.docno, max(r.rank) AS reached, o.f_stage = 'closed_lost' AS lost \
             FROM rec_opportunity o \
             JOIN record_history h ON h.docno = o.docno AND h.field = 'stage' \
             JOIN ranks r ON r.stage = h.value \
             WHERE o.archived = 0{range} \
             GROUP BY o.docno) \
         SELECT reached, lost, count(*) FROM deals GROUP BY reached, lost"
    );
    let mut reached = vec![0i64; PIPELINE.len()];
    let mut lost_at = vec![0i64; PIPELINE.len()];
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (rank, lost, n) = row?;
        let rank = usize::try_from(rank).unwrap_or(0).min(PIPELINE.len() - 1);
        // Reaching a stage means passing every earlier one.
        for r in reached.iter_mut().take(rank + 1) {
            *r += n;
        }
        if lost {
            lost_at[rank] += n;
        }
    }
    let mut report = Report::new(
        def,
        vec![
            Column::new("from", "From stage", Unit::Text),
            Column::new("to", "To stage", Unit::Text),
            Column::new("entered", "Reached from", Unit::Count),
            Column::new("advanced", "Reached to", Unit::Count),
            Column::new("rate", "Conversion", Unit::Ratio),
            Column::new("lost", "Lost here", Unit::Count),
        ],
    );
    for i in 0..PIPELINE.len() - 1 {
        report.rows.push(vec![
            json!(PIPELINE[i]),
            json!(PIPELINE[i + 1]),
            json!(reached[i]),
            json!(reached[i + 1]),
            ratio(reached[i + 1] as f64, reached[i] as f64),
            json!(lost_at[i]),
        ]);
    }
    report.summary = vec![
        figure(
            "deals",
            "Deals with a stage history",
            Unit::Count,
            json!(reached[0]),
        ),
        figure(
            "won",
            "Reached closed_won",
            Unit::Count,
            json!(reached[PIPELINE.len() - 1]),
        ),
        figure(
            "overall",
            "Prospecting to won",
            Unit::Ratio,
            ratio(reached[PIPELINE.len() - 1] as f64, reached[0] as f64),
        ),
    ];
    Ok(report)
}

/// Rows of (label, won, lost, won amount) as a win-rate report.
fn win_rate_report(
    def: &ReportDef,
    label: &'static str,
    rows: Vec<(String, i64, i64, i64)>,
) -> Report {
    let mut report = Report::new(
        def,
        vec![
            Column::new("name", label, Unit::Text),
            Column::new("won", "Won", Unit::Count),
            Column::new("lost", "Lost", Unit::Count),
            Column::new("win_rate", "Win rate", Unit::Ratio),
            Column::new("won_amount", "Won amount", Unit::Money),
        ],
    );
    let (mut won, mut lost, mut amount) = (0, 0, 0);
    for (name, w, l, a) in rows {
        won += w;
        lost += l;
        amount += a;
        report.rows.push(vec![
            json!(name),
            json!(w),
            json!(l),
            ratio(w as f64, (w + l) as f64),
            json!(a),
        ]);
    }
    report.summary = vec![
        figure("won", "Won", Unit::Count, json!(won)),
        figure("lost", "Lost", Unit::Count, json!(lost)),
        figure(
            "win_rate",
            "Win rate",
            Unit::Ratio,
            ratio(won as f64, (won + lost) as f64),
        ),
        figure("won_amount", "Won amount", Unit::Money, json!(amount)),
    ];
    report
}

fn win_rate_rows(
    store: &Store,
    sql: &str,
    args: Vec<String>,
) -> Result<Vec<(String, i64, i64, i64)>> {
    let mut stmt = store.conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, Option<String>>(0)?
                .unwrap_or_else(|| "(no owner)".into()),
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Won and lost deals per owner (by name), and won / (won + lost).
fn win_rate_by_owner(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("o.f_closed_at", params);
    let sql = format!(
        "SELECT coalesce(u.f_name, o.f_owner), \
                sum(o.f_stage = 'closed_won'), sum(o.f_stage = 'closed_lost'), \
                coalesce(sum(CASE WHEN o.f_stage = 'closed_won' THEN o.f_amount END), 0) \
         FROM rec_opportunity o LEFT JOIN rec_user u ON u.id = o.f_owner \
         WHERE o.archived = 0 AND o.f_stage IN ('closed_won', 'closed_lost'){range} \
         GROUP BY o.f_owner ORDER BY 1"
    );
    let rows = win_rate_rows(store, &sql, args)?;
    Ok(win_rate_report(def, "Owner", rows))
}

/// Won and lost deals owned by each team's members (a member of two teams counts in both).
fn win_rate_by_team(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("o.f_closed_at", params);
    let sql = format!(
        "SELECT t.f_name, \
                sum(o.f_stage = 'closed_won'), sum(o.f_stage = 'closed_lost'), \
                coalesce(sum(CASE WHEN o.f_stage = 'closed_won' THEN o.f_amount END), 0) \
         FROM rec_team t, json_each(t.f_members) m \
         JOIN rec_opportunity o ON o.f_owner = m.value AND o.archived = 0 \
         WHERE t.archived = 0 AND o.f_stage IN ('closed_won', 'closed_lost'){range} \
         GROUP BY t.docno ORDER BY 1"
    );
    let rows = win_rate_rows(store, &sql, args)?;
    Ok(win_rate_report(def, "Team", rows))
}

/// Days from creation to `closed_at` of closed deals, per outcome and overall.
fn cycle_length(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("f_closed_at", params);
    let sql = format!(
        "SELECT f_stage, sum(d >= 0), avg(CASE WHEN d >= 0 THEN d END), \
                min(CASE WHEN d >= 0 THEN d END), max(CASE WHEN d >= 0 THEN d END), \
                sum(d < 0) \
         FROM ( \
             SELECT f_stage, julianday(f_closed_at) - julianday(created_at) AS d \
             FROM rec_opportunity \
             WHERE archived = 0 AND f_stage IN ('closed_won', 'closed_lost') \
               AND f_closed_at IS NOT NULL AND created_at IS NOT NULL{range}) \
         GROUP BY f_stage"
    );
    let mut by_outcome = HashMap::new();
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            (
                r.get::<_, i64>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, Option<f64>>(3)?,
                r.get::<_, Option<f64>>(4)?,
            ),
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut before_created = 0;
    for row in rows {
        let (stage, figures, early) = row?;
        by_outcome.insert(stage, figures);
        before_created += early;
    }
    let mut report = Report::new(
        def,
        vec![
            Column::new("outcome", "Outcome", Unit::Text),
            Column::new("deals", "Deals", Unit::Count),
            Column::new("average", "Average", Unit::Days),
            Column::new("shortest", "Shortest", Unit::Days),
            Column::new("longest", "Longest", Unit::Days),
        ],
    );
    let (mut n_all, mut sum_all) = (0i64, 0.0);
    for stage in ["closed_won", "closed_lost"] {
        let (n, avg, min, max) = by_outcome
            .get(stage)
            .copied()
            .unwrap_or((0, None, None, None));
        n_all += n;
        sum_all += avg.unwrap_or(0.0) * n as f64;
        report.rows.push(vec![
            json!(stage),
            json!(n),
            round2(avg),
            round2(min),
            round2(max),
        ]);
    }
    report.summary = vec![
        figure("deals", "Closed deals", Unit::Count, json!(n_all)),
        figure(
            "average",
            "Average cycle",
            Unit::Days,
            round2((n_all > 0).then(|| sum_all / n_all as f64)),
        ),
        figure(
            "closed_before_created",
            "Left out: closed before the record was created (imported history)",
            Unit::Count,
            json!(before_created),
        ),
    ];
    Ok(report)
}

/// Per open stage: the stays that ended (the next history entry's time less this one's),
/// their average length, and the deals in the stage now with the average time since they
/// entered it (until the report's `now`).
fn time_in_stage(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, range_args) = date_range("o.created_at", params);
    let sql = format!(
        "SELECT h.value, count(n.at), avg(julianday(n.at) - julianday(h.at)), \
                count(*) - count(n.at), \
                avg(CASE WHEN n.at IS NULL THEN julianday(?) - julianday(h.at) END) \
         FROM record_history h \
         JOIN rec_opportunity o ON o.docno = h.docno \
         LEFT JOIN record_history n \
             ON n.docno = h.docno AND n.field = h.field AND n.pos = h.pos + 1 \
         WHERE h.kind = 'opportunity' AND h.field = 'stage' AND o.archived = 0{range} \
         GROUP BY h.value"
    );
    let mut args = vec![crm_model::format_time(&params.now)];
    args.extend(range_args);
    let by_stage = keyed(store, &sql, args, |r| {
        Ok((
            r.get::<_, i64>(1)?,
            r.get::<_, Option<f64>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<f64>>(4)?,
        ))
    })?;
    let mut report = Report::new(
        def,
        vec![
            Column::new("stage", "Stage", Unit::Text),
            Column::new("stays", "Stays ended", Unit::Count),
            Column::new("average", "Average stay", Unit::Days),
            Column::new("current", "In stage now", Unit::Count),
            Column::new("current_age", "Average age now", Unit::Days),
        ],
    );
    let mut total_days = 0.0;
    for stage in &PIPELINE[..PIPELINE.len() - 1] {
        let (stays, avg, current, age) =
            by_stage.get(*stage).copied().unwrap_or((0, None, 0, None));
        total_days += avg.unwrap_or(0.0);
        report.rows.push(vec![
            json!(stage),
            json!(stays),
            round2(avg),
            json!(current),
            round2(age),
        ]);
    }
    report.summary = vec![figure(
        "pipeline_days",
        "Sum of average stays (prospecting to negotiation)",
        Unit::Days,
        round2(Some(total_days)),
    )];
    Ok(report)
}

/// Per month of expected close: open deals, their amount, weighted amount (probability
/// override or stage default), the amount in forecast category `commit`, and the amount won.
fn forecast(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("f_close_date", params);
    let sql = format!(
        "SELECT substr(f_close_date, 1, 7) AS month, \
                sum(f_stage NOT IN ('closed_won', 'closed_lost')), \
                coalesce(sum(CASE WHEN f_stage NOT IN ('closed_won', 'closed_lost') \
                    THEN f_amount END), 0), \
                coalesce(sum(CASE WHEN f_stage NOT IN ('closed_won', 'closed_lost') \
                    THEN f_amount * coalesce(f_probability, {p}) / 100.0 END), 0), \
                coalesce(sum(CASE WHEN f_stage NOT IN ('closed_won', 'closed_lost') \
                    AND f_forecast_category = 'commit' THEN f_amount END), 0), \
                coalesce(sum(CASE WHEN f_stage = 'closed_won' THEN f_amount END), 0) \
         FROM rec_opportunity \
         WHERE archived = 0 AND f_close_date IS NOT NULL{range} \
         GROUP BY month ORDER BY month",
        p = probability_case()
    );
    let mut report = Report::new(
        def,
        vec![
            Column::new("month", "Close month", Unit::Text),
            Column::new("open", "Open deals", Unit::Count),
            Column::new("pipeline", "Pipeline", Unit::Money),
            Column::new("weighted", "Weighted", Unit::Money),
            Column::new("commit", "Commit", Unit::Money),
            Column::new("won", "Won", Unit::Money),
        ],
    );
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let (mut pipeline, mut weighted, mut won) = (0, 0.0, 0);
    for row in rows {
        let (month, open, amount, w, commit, w_amount) = row?;
        pipeline += amount;
        weighted += w;
        won += w_amount;
        report.rows.push(vec![
            json!(month),
            json!(open),
            json!(amount),
            json!(w.round() as i64),
            json!(commit),
            json!(w_amount),
        ]);
    }
    report.summary = vec![
        figure("pipeline", "Open pipeline", Unit::Money, json!(pipeline)),
        figure(
            "weighted",
            "Weighted forecast",
            Unit::Money,
            json!(weighted.round() as i64),
        ),
        figure("won", "Won", Unit::Money, json!(won)),
    ];
    Ok(report)
}

/// Lost deals per lost reason (every reason listed, then those without one).
fn lost_reasons(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("f_closed_at", params);
    let sql = format!(
        "SELECT coalesce(f_lost_reason, 'unspecified'), count(*), coalesce(sum(f_amount), 0) \
         FROM rec_opportunity WHERE archived = 0 AND f_stage = 'closed_lost'{range} \
         GROUP BY 1"
    );
    let by_reason = keyed(store, &sql, args, |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    let total: i64 = by_reason.values().map(|(n, _)| n).sum();
    let total_amount: i64 = by_reason.values().map(|(_, a)| a).sum();
    let mut report = Report::new(
        def,
        vec![
            Column::new("reason", "Reason", Unit::Text),
            Column::new("deals", "Deals", Unit::Count),
            Column::new("amount", "Amount", Unit::Money),
            Column::new("share", "Share of lost deals", Unit::Ratio),
        ],
    );
    let unspecified = by_reason
        .contains_key("unspecified")
        .then_some("unspecified");
    for reason in LOST_REASONS.iter().copied().chain(unspecified) {
        let (n, amount) = by_reason.get(reason).copied().unwrap_or((0, 0));
        report.rows.push(vec![
            json!(reason),
            json!(n),
            json!(amount),
            ratio(n as f64, total as f64),
        ]);
    }
    report.summary = vec![
        figure("lost", "Lost deals", Unit::Count, json!(total)),
        figure(
            "lost_amount",
            "Lost amount",
            Unit::Money,
            json!(total_amount),
        ),
    ];
    Ok(report)
}

/// Per lead source: leads, converted leads, and what their opportunities became.
fn lead_sources(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("l.created_at", params);
    let sql = format!(
        "SELECT coalesce(l.f_source, 'unspecified'), count(*), \
                coalesce(sum(l.f_status = 'converted'), 0), count(o.docno), \
                coalesce(sum(o.f_stage = 'closed_won'), 0), \
                coalesce(sum(CASE WHEN o.f_stage = 'closed_won' THEN o.f_amount END), 0) \
         FROM rec_lead l \
         LEFT JOIN rec_opportunity o ON o.id = l.f_converted_opportunity AND o.archived = 0 \
         WHERE l.archived = 0{range} \
         GROUP BY 1"
    );
    let by_source = keyed(store, &sql, args, |r| {
        Ok((
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut report = Report::new(
        def,
        vec![
            Column::new("source", "Source", Unit::Text),
            Column::new("leads", "Leads", Unit::Count),
            Column::new("converted", "Converted", Unit::Count),
            Column::new("conversion", "Conversion", Unit::Ratio),
            Column::new("opportunities", "Opportunities", Unit::Count),
            Column::new("won", "Won deals", Unit::Count),
            Column::new("won_amount", "Won amount", Unit::Money),
        ],
    );
    let unspecified = by_source
        .contains_key("unspecified")
        .then_some("unspecified");
    let (mut leads, mut converted, mut won_amount) = (0, 0, 0);
    for source in SOURCES.iter().copied().chain(unspecified) {
        let (n, conv, opps, won, amount) = by_source.get(source).copied().unwrap_or_default();
        leads += n;
        converted += conv;
        won_amount += amount;
        report.rows.push(vec![
            json!(source),
            json!(n),
            json!(conv),
            ratio(conv as f64, n as f64),
            json!(opps),
            json!(won),
            json!(amount),
        ]);
    }
    report.summary = vec![
        figure("leads", "Leads", Unit::Count, json!(leads)),
        figure("converted", "Converted", Unit::Count, json!(converted)),
        figure(
            "conversion",
            "Conversion",
            Unit::Ratio,
            ratio(converted as f64, leads as f64),
        ),
        figure("won_amount", "Won amount", Unit::Money, json!(won_amount)),
    ];
    Ok(report)
}

#[cfg(test)]
mod tests {
    use crm_model::{Edit, Kind};

    use crate::Store;
    use crate::reports::ReportParams;

    fn deal(store: &mut Store, stage: &str, amount: &str, probability: Option<&str>) {
        let mut e = Edit::new(Kind::Opportunity);
        e.set("name", &format!("{stage} {amount}")).expect("valid");
        e.set("stage", stage).expect("valid");
        e.set("amount", amount).expect("valid");
        e.set("close_date", "2026-12-15").expect("valid");
        if let Some(p) = probability {
            e.set("probability", p).expect("valid");
        }
        store.create(&e).expect("create");
    }

    #[test]
    fn funnel_counts_sums_and_weights_by_stage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        deal(&mut store, "proposal", "1000", None); // weighted 500
        deal(&mut store, "proposal", "3000", Some("10")); // weighted 300
        deal(&mut store, "negotiation", "2000", None); // weighted 1600
        deal(&mut store, "closed_won", "500", None);
        let r = store
            .report("funnel", &ReportParams::now())
            .expect("report");
        let json = r.to_json();
        let rows = json["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 6, "every stage listed");
        let proposal = rows
            .iter()
            .find(|r| r["stage"] == "proposal")
            .expect("proposal");
        assert_eq!(proposal["count"], 2);
        assert_eq!(proposal["amount"], 400_000, "minor units");
        assert_eq!(proposal["weighted"], 80_000);
        assert_eq!(rows[0]["stage"], "prospecting");
        assert_eq!(rows[0]["count"], 0);
        assert_eq!(json["summary"]["deals"], 4);
        assert_eq!(json["summary"]["open_amount"], 600_000);
        assert_eq!(json["summary"]["open_weighted"], 240_000);
        assert_eq!(json["summary"]["win_rate"], 1.0, "1 won, 0 lost");

        let later = ReportParams {
            from: chrono::NaiveDate::from_ymd_opt(2027, 1, 1),
            ..ReportParams::now()
        };
        let r = store.report("funnel", &later).expect("report");
        assert_eq!(r.to_json()["summary"]["deals"], 0, "date range applies");
    }

    /// The sales dataset of the reports below, with times set so every figure can be worked
    /// out by hand. T0 = 2026-01-01T00:00Z; "now" is T0 + 35 days.
    ///
    /// | deal | owner | amount | close date | history (day: stage)                         |
    /// |------|-------|--------|------------|----------------------------------------------|
    /// | A    | alice | 1000   | 2026-01-15 | 0 prospecting, 2 qualification, 5 proposal, 15 won |
    /// | B    | alice | 2000   | 2026-01-10 | 0 prospecting, 4 qualification, 10 lost (price) |
    /// | C    | alice | 1000   | 2026-03-10 | 20 prospecting                               |
    /// | D    | alice | 4000   | 2026-03-20 | 25 negotiation (commit)                      |
    /// | E    | bob   | 500    | 2026-02-05 | 30 prospecting, 32 won                       |
    ///
    /// Teams: East = alice + bob, West = bob. Leads: web_form converted into A, web_form new,
    /// referral converted into B, one without a source.
    struct Dataset {
        _dir: tempfile::TempDir,
        store: Store,
        now: chrono::DateTime<chrono::Utc>,
    }

    fn day(n: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc)
            + chrono::Duration::days(n)
    }

    fn dataset() -> Dataset {
        use crate::flows::sales::deals::Outcome;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Store::init(dir.path(), "alice", "laptop").expect("init");
        let alice = s.identity().user_id.expect("me").to_string();
        let create = |s: &mut Store, kind: Kind, fields: &[(&str, &str)]| {
            let mut e = Edit::new(kind);
            for (f, v) in fields {
                e.set(f, v).expect("valid");
            }
            s.create(&e).expect("create").id
        };
        let bob = create(&mut s, Kind::User, &[("name", "bob")]).to_string();
        create(
            &mut s,
            Kind::Team,
            &[("name", "East"), ("members", &format!("{alice},{bob}"))],
        );
        create(&mut s, Kind::Team, &[("name", "West"), ("members", &bob)]);

        s.set_clock(Some(day(0)));
        let a = create(
            &mut s,
            Kind::Opportunity,
            &[
                ("name", "A"),
                ("amount", "1000"),
                ("close_date", "2026-01-15"),
            ],
        );
        let b = create(
            &mut s,
            Kind::Opportunity,
            &[
                ("name", "B"),
                ("amount", "2000"),
                ("close_date", "2026-01-10"),
            ],
        );
        s.set_clock(Some(day(2)));
        s.move_stage(a, "qualification", None).expect("move");
        s.set_clock(Some(day(4)));
        s.move_stage(b, "qualification", None).expect("move");
        s.set_clock(Some(day(5)));
        s.move_stage(a, "proposal", None).expect("move");
        s.set_clock(Some(day(10)));
        s.close_opportunity(
            b,
            &Outcome::Lost {
                reason: "price".into(),
            },
        )
        .expect("close");
        s.set_clock(Some(day(15)));
        s.close_opportunity(a, &Outcome::Won).expect("close");
        s.set_clock(Some(day(20)));
        create(
            &mut s,
            Kind::Opportunity,
            &[
                ("name", "C"),
                ("amount", "1000"),
                ("close_date", "2026-03-10"),
            ],
        );
        s.set_clock(Some(day(25)));
        create(
            &mut s,
            Kind::Opportunity,
            &[
                ("name", "D"),
                ("amount", "4000"),
                ("close_date", "2026-03-20"),
                ("stage", "negotiation"),
                ("forecast_category", "commit"),
            ],
        );
        s.set_clock(Some(day(30)));
        let e = create(
            &mut s,
            Kind::Opportunity,
            &[
                ("name", "E"),
                ("amount", "500"),
                ("close_date", "2026-02-05"),
                ("owner", &bob),
            ],
        );
        s.set_clock(Some(day(32)));
        s.close_opportunity(e, &Outcome::Won).expect("close");

        let (a, b) = (a.to_string(), b.to_string());
        for fields in [
            vec![
                ("source", "web_form"),
                ("status", "converted"),
                ("converted_opportunity", a.as_str()),
            ],
            vec![("source", "web_form")],
            vec![
                ("source", "referral"),
                ("status", "converted"),
                ("converted_opportunity", b.as_str()),
            ],
            vec![],
        ] {
            let mut all = vec![("person_name", "lead")];
            all.extend(fields);
            create(&mut s, Kind::Lead, &all);
        }
        s.set_clock(None);
        Dataset {
            _dir: dir,
            store: s,
            now: day(35),
        }
    }

    fn run(d: &Dataset, name: &str) -> serde_json::Value {
        let params = ReportParams {
            now: d.now,
            from: None,
            to: None,
        };
        d.store.report(name, &params).expect("report").to_json()
    }

    fn row<'a>(report: &'a serde_json::Value, key: &str, value: &str) -> &'a serde_json::Value {
        report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r[key] == value)
            .unwrap_or_else(|| panic!("no row {key}={value} in {report}"))
    }

    #[test]
    fn sales_reports_match_the_hand_worked_dataset() {
        use serde_json::json;
        let d = dataset();

        // Furthest stage reached: A won (4), B qualification then lost (1), C prospecting (0),
        // D negotiation (3), E won (4). Reached at least: 5, 4, 3, 3, 2.
        let r = run(&d, "stage-conversion");
        let rows = r["rows"].as_array().expect("rows");
        let got: Vec<(i64, i64, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["entered"].as_i64().expect("n"),
                    r["advanced"].as_i64().expect("n"),
                    r["lost"].as_i64().expect("n"),
                )
            })
            .collect();
        assert_eq!(got, [(5, 4, 0), (4, 3, 1), (3, 3, 0), (3, 2, 0)]);
        assert_eq!(rows[0]["rate"], json!(0.8));
        assert_eq!(rows[3]["rate"], json!(2.0 / 3.0));
        assert_eq!(r["summary"]["overall"], json!(0.4));
        let later = ReportParams {
            now: d.now,
            from: chrono::NaiveDate::from_ymd_opt(2026, 1, 21),
            to: None,
        };
        let r = d
            .store
            .report("stage-conversion", &later)
            .expect("report")
            .to_json();
        assert_eq!(
            r["summary"]["deals"], 3,
            "C, D and E were created from 21 January"
        );

        // Ended stays: prospecting A 2, B 4, E 2 days (avg 8/3); qualification A 3, B 6
        // (avg 4.5); proposal A 10. Now (day 35): C in prospecting since day 20 (15 days),
        // D in negotiation since day 25 (10 days).
        let r = run(&d, "time-in-stage");
        let p = row(&r, "stage", "prospecting");
        assert_eq!(
            (p["stays"].clone(), p["average"].clone()),
            (json!(3), json!(2.67))
        );
        assert_eq!(
            (p["current"].clone(), p["current_age"].clone()),
            (json!(1), json!(15.0))
        );
        let q = row(&r, "stage", "qualification");
        assert_eq!(
            (q["stays"].clone(), q["average"].clone()),
            (json!(2), json!(4.5))
        );
        assert_eq!(q["current_age"], json!(null));
        assert_eq!(row(&r, "stage", "proposal")["average"], json!(10.0));
        let n = row(&r, "stage", "negotiation");
        assert_eq!(
            (n["stays"].clone(), n["average"].clone()),
            (json!(0), json!(null))
        );
        assert_eq!(n["current_age"], json!(10.0));
        assert_eq!(r["summary"]["pipeline_days"], json!(17.17));

        // Won: A 15 days, E 2 days; lost: B 10 days. All: 27 / 3 = 9.
        let r = run(&d, "cycle-length");
        let won = row(&r, "outcome", "closed_won");
        assert_eq!(
            (
                won["deals"].clone(),
                won["average"].clone(),
                won["shortest"].clone(),
                won["longest"].clone()
            ),
            (json!(2), json!(8.5), json!(2.0), json!(15.0))
        );
        assert_eq!(row(&r, "outcome", "closed_lost")["average"], json!(10.0));
        assert_eq!(r["summary"]["average"], json!(9.0));
        assert_eq!(r["summary"]["closed_before_created"], json!(0));

        // alice: A won (1000.00), B lost; bob: E won (500.00).
        let r = run(&d, "win-rate-by-owner");
        let alice = row(&r, "name", "alice");
        assert_eq!(
            (
                alice["won"].clone(),
                alice["lost"].clone(),
                alice["win_rate"].clone(),
                alice["won_amount"].clone()
            ),
            (json!(1), json!(1), json!(0.5), json!(100_000))
        );
        assert_eq!(row(&r, "name", "bob")["win_rate"], json!(1.0));
        assert_eq!(r["summary"]["win_rate"], json!(2.0 / 3.0));
        // East (alice + bob): 2 won, 1 lost; West (bob): 1 won.
        let r = run(&d, "win-rate-by-team");
        let east = row(&r, "name", "East");
        assert_eq!(
            (
                east["won"].clone(),
                east["lost"].clone(),
                east["won_amount"].clone()
            ),
            (json!(2), json!(1), json!(150_000))
        );
        let west = row(&r, "name", "West");
        assert_eq!(
            (west["won"].clone(), west["win_rate"].clone()),
            (json!(1), json!(1.0))
        );

        // 2026-01: A won 1000; 2026-02: E won 500; 2026-03: C 1000 × 10 % + D 4000 × 80 %
        // = 100 + 3200 weighted, D's 4000 in commit.
        let r = run(&d, "forecast");
        let months: Vec<&str> = r["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["month"].as_str().expect("month"))
            .collect();
        assert_eq!(months, ["2026-01", "2026-02", "2026-03"]);
        assert_eq!(row(&r, "month", "2026-01")["won"], json!(100_000));
        let march = row(&r, "month", "2026-03");
        assert_eq!(
            (
                march["open"].clone(),
                march["pipeline"].clone(),
                march["weighted"].clone(),
                march["commit"].clone()
            ),
            (json!(2), json!(500_000), json!(330_000), json!(400_000))
        );
        assert_eq!(r["summary"]["won"], json!(150_000));

        // One lost deal: B, price, 2000.
        let r = run(&d, "lost-reasons");
        assert_eq!(
            r["rows"].as_array().expect("rows").len(),
            7,
            "every reason listed"
        );
        let price = row(&r, "reason", "price");
        assert_eq!(
            (
                price["deals"].clone(),
                price["amount"].clone(),
                price["share"].clone()
            ),
            (json!(1), json!(200_000), json!(1.0))
        );
        assert_eq!(row(&r, "reason", "timing")["share"], json!(0.0));

        // web_form: 2 leads, 1 converted into A (won 1000); referral: 1 converted into B
        // (lost); one lead without a source.
        let r = run(&d, "lead-sources");
        let web = row(&r, "source", "web_form");
        assert_eq!(
            (
                web["leads"].clone(),
                web["converted"].clone(),
                web["conversion"].clone(),
                web["won"].clone(),
                web["won_amount"].clone()
            ),
            (json!(2), json!(1), json!(0.5), json!(1), json!(100_000))
        );
        let referral = row(&r, "source", "referral");
        assert_eq!(
            (referral["opportunities"].clone(), referral["won"].clone()),
            (json!(1), json!(0))
        );
        assert_eq!(row(&r, "source", "unspecified")["leads"], json!(1));
        assert_eq!(r["summary"]["conversion"], json!(0.5));
        assert_eq!(r["summary"]["won_amount"], json!(100_000));
    }

    #[test]
    fn cycle_length_leaves_out_deals_closed_before_they_were_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Store::init(dir.path(), "alice", "laptop").expect("init");
        s.set_clock(Some(day(10)));
        for closed_at in ["2026-01-21T00:00:00Z", "2026-01-02T00:00:00Z"] {
            let mut e = Edit::new(Kind::Opportunity);
            e.set("name", "imported").expect("valid");
            e.set("stage", "closed_won").expect("valid");
            e.set("closed_at", closed_at).expect("valid");
            s.create(&e).expect("create");
        }
        // Created day 10: one closed day 20 (10 days), one closed day 1 (before it existed).
        let params = ReportParams {
            now: day(30),
            from: None,
            to: None,
        };
        let r = s.report("cycle-length", &params).expect("report").to_json();
        assert_eq!(r["rows"][0]["deals"], 1);
        assert_eq!(r["rows"][0]["average"], 10.0);
        assert_eq!(r["summary"]["closed_before_created"], 1);
    }
}
