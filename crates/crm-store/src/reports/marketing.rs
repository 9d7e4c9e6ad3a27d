//! Marketing reports: what each campaign reached and what it earned.
//!
//! Attribution: a lead belongs to a campaign through its `campaign` field; a won opportunity
//! through its own `campaign` field, or, when that is empty, through the campaign of the lead
//! converted into it. So every won deal counts for at most one campaign and the campaigns'
//! revenues add up. Costs are the campaigns' `actual_cost`.

use rusqlite::params_from_iter;
use serde_json::{Value as Json, json};

use super::{Column, Figure, Report, ReportDef, ReportParams, Unit, date_range, ratio};
use crate::{Result, Store};

pub(super) const REPORTS: &[ReportDef] = &[
    ReportDef {
        name: "campaign-response",
        group: "marketing",
        title: "Campaign reach and response",
        about: "Per campaign: members and response rate (responded or converted), attributed \
                leads, cost per lead and lead-to-won conversion (campaigns by start date)",
        run: response,
    },
    ReportDef {
        name: "campaign-roi",
        group: "marketing",
        title: "Campaign revenue, ROI and goals",
        about: "Per campaign: actual cost, attributed won revenue, ROI ((revenue − cost) / \
                cost) and goal attainment for leads and revenue (campaigns by start date)",
        run: roi,
    },
];

/// One campaign's figures.
struct Row {
    name: String,
    status: Option<String>,
    cost: Option<i64>,
    goal_leads: Option<i64>,
    goal_revenue: Option<i64>,
    members: i64,
    responded: i64,
    leads: i64,
    won_leads: i64,
    won_deals: i64,
    revenue: i64,
}

/// Every campaign's figures in one query (no per-campaign queries).
fn rows(store: &Store, params: &ReportParams) -> Result<Vec<Row>> {
    let (range, args) = date_range("c.f_start_date", params);
    let sql = format!(
        "WITH m AS ( \
            SELECT f_campaign AS c, count(*) AS members, \
                   sum(f_status IN ('responded', 'converted') OR f_responded_at IS NOT NULL) AS responded \
            FROM rec_campaign_member WHERE archived = 0 GROUP BY f_campaign), \
         l AS ( \
            SELECT l.f_campaign AS c, count(*) AS leads, \
                   sum(o.f_stage = 'closed_won') AS won_leads \
            FROM rec_lead l LEFT JOIN rec_opportunity o \
              ON o.id = l.f_converted_opportunity AND o.archived = 0 \
            WHERE l.archived = 0 AND l.f_campaign IS NOT NULL GROUP BY l.f_campaign), \
         w AS ( \
            SELECT c, count(*) AS deals, sum(amount) AS revenue FROM ( \
              SELECT f_campaign AS c, coalesce(f_amount, 0) AS amount FROM rec_opportunity \
              WHERE archived = 0 AND f_stage = 'closed_won' AND f_campaign IS NOT NULL \
              UNION ALL \
              SELECT l.f_campaign, coalesce(o.f_amount, 0) FROM rec_lead l \
              JOIN rec_opportunity o ON o.id = l.f_converted_opportunity \
              WHERE l.archived = 0 AND o.archived = 0 AND o.f_stage = 'closed_won' \
                AND o.f_campaign IS NULL AND l.f_campaign IS NOT NULL) \
            GROUP BY c) \
         SELECT c.title, c.f_status, c.f_actual_cost, c.f_goal_leads, c.f_goal_revenue, \
                coalesce(m.members, 0), coalesce(m.responded, 0), coalesce(l.leads, 0), \
                coalesce(l.won_leads, 0), coalesce(w.deals, 0), coalesce(w.revenue, 0) \
         FROM rec_campaign c \
         LEFT JOIN m ON m.c = c.id LEFT JOIN l ON l.c = c.id LEFT JOIN w ON w.c = c.id \
         WHERE c.archived = 0{range} ORDER BY c.f_start_date, c.title, c.id"
    );
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(Row {
            name: r.get(0)?,
            status: r.get(1)?,
            cost: r.get(2)?,
            goal_leads: r.get(3)?,
            goal_revenue: r.get(4)?,
            members: r.get(5)?,
            responded: r.get(6)?,
            leads: r.get(7)?,
            won_leads: r.get(8)?,
            won_deals: r.get(9)?,
            revenue: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `value / by` in minor units, rounded; `null` when there is nothing to divide by.
fn per(value: Option<i64>, by: i64) -> Json {
    match value {
        Some(v) if by > 0 => json!((v as f64 / by as f64).round() as i64),
        _ => Json::Null,
    }
}

/// (revenue − cost) / cost; `null` without a cost.
fn roi_of(revenue: i64, cost: Option<i64>) -> Json {
    match cost {
        Some(c) if c > 0 => json!((revenue - c) as f64 / c as f64),
        _ => Json::Null,
    }
}

fn goal(value: i64, goal: Option<i64>) -> Json {
    match goal {
        Some(g) if g > 0 => json!(value as f64 / g as f64),
        _ => Json::Null,
    }
}

fn figure(key: &'static str, label: &'static str, unit: Unit, value: Json) -> Figure {
    Figure {
        key,
        label,
        unit,
        value,
    }
}

fn response(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let rows = rows(store, params)?;
    let mut report = Report::new(
        def,
        vec![
            Column::new("campaign", "Campaign", Unit::Text),
            Column::new("status", "Status", Unit::Text),
            Column::new("members", "Members", Unit::Count),
            Column::new("responded", "Responded", Unit::Count),
            Column::new("response_rate", "Response rate", Unit::Ratio),
            Column::new("leads", "Leads", Unit::Count),
            Column::new("cost_per_lead", "Cost per lead", Unit::Money),
            Column::new("won_leads", "Leads won", Unit::Count),
            Column::new("lead_to_won", "Lead → won", Unit::Ratio),
        ],
    );
    let (mut members, mut responded, mut leads, mut won, mut cost) = (0, 0, 0, 0, 0);
    for r in &rows {
        members += r.members;
        responded += r.responded;
        leads += r.leads;
        won += r.won_leads;
        cost += r.cost.unwrap_or(0);
        report.rows.push(vec![
            json!(r.name),
            json!(r.status),
            json!(r.members),
            json!(r.responded),
            ratio(r.responded as f64, r.members as f64),
            json!(r.leads),
            per(r.cost, r.leads),
            json!(r.won_leads),
            ratio(r.won_leads as f64, r.leads as f64),
        ]);
    }
    report.summary = vec![
        figure("campaigns", "Campaigns", Unit::Count, json!(rows.len())),
        figure(
            "response_rate",
            "Response rate",
            Unit::Ratio,
            ratio(responded as f64, members as f64),
        ),
        figure("leads", "Leads", Unit::Count, json!(leads)),
        figure(
            "cost_per_lead",
            "Cost per lead",
            Unit::Money,
            per(Some(cost), leads),
        ),
        figure(
            "lead_to_won",
            "Lead → won",
            Unit::Ratio,
            ratio(won as f64, leads as f64),
        ),
    ];
    Ok(report)
}

fn roi(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let rows = rows(store, params)?;
    let mut report = Report::new(
        def,
        vec![
            Column::new("campaign", "Campaign", Unit::Text),
            Column::new("status", "Status", Unit::Text),
            Column::new("actual_cost", "Actual cost", Unit::Money),
            Column::new("won_deals", "Won deals", Unit::Count),
            Column::new("revenue", "Attributed revenue", Unit::Money),
            Column::new("roi", "ROI", Unit::Ratio),
            Column::new("leads_vs_goal", "Leads vs goal", Unit::Ratio),
            Column::new("revenue_vs_goal", "Revenue vs goal", Unit::Ratio),
        ],
    );
    let (mut cost, mut revenue, mut deals) = (0, 0, 0);
    for r in &rows {
        cost += r.cost.unwrap_or(0);
        revenue += r.revenue;
        deals += r.won_deals;
        report.rows.push(vec![
            json!(r.name),
            json!(r.status),
            json!(r.cost),
            json!(r.won_deals),
            json!(r.revenue),
            roi_of(r.revenue, r.cost),
            goal(r.leads, r.goal_leads),
            goal(r.revenue, r.goal_revenue),
        ]);
    }
    report.summary = vec![
        figure("actual_cost", "Actual cost", Unit::Money, json!(cost)),
        figure("won_deals", "Won deals", Unit::Count, json!(deals)),
        figure("revenue", "Attributed revenue", Unit::Money, json!(revenue)),
        figure("roi", "ROI", Unit::Ratio, roi_of(revenue, Some(cost))),
    ];
    Ok(report)
}

#[cfg(test)]
mod tests {
    use crm_model::{Edit, Kind, RecordId};

    use crate::Store;
    use crate::reports::ReportParams;

    fn make(store: &mut Store, kind: Kind, fields: &[(&str, &str)]) -> RecordId {
        let mut e = Edit::new(kind);
        for (k, v) in fields {
            e.set(k, v).expect("valid");
        }
        store.create(&e).expect("create").id
    }

    /// Two campaigns:
    /// - 展会 (trade show): cost 10,000, goals 4 leads / 50,000 revenue; 4 members, 2 of them
    ///   responded (one `responded`, one `converted`), 1 `opened`, 1 `targeted`; 2 leads: L1
    ///   converted into deal D1 (won, 30,000, no campaign of its own → attributed through L1),
    ///   L2 unconverted. Plus deal D2 (won, 20,000, campaign = 展会 directly) and D3 (lost,
    ///   campaign = 展会, ignored).
    /// - Webinar: cost 2,000, no goals; no members; 1 lead L3 converted into D4 (won, 5,000)
    ///   whose own campaign is 展会: D4 counts for 展会 only (its own field wins).
    ///
    /// 展会: response 2/4 = 0.5; leads 2; cost per lead 10,000 / 2 = 5,000; lead → won 1/2;
    ///   revenue 30,000 + 20,000 + 5,000 = 55,000, 3 deals; ROI (55,000 − 10,000) / 10,000 =
    ///   4.5; leads vs goal 2/4 = 0.5; revenue vs goal 55,000 / 50,000 = 1.1.
    /// Webinar: leads 1, cost per lead 2,000, lead → won 1/1 (its lead's deal was won);
    ///   revenue 0, ROI (0 − 2,000) / 2,000 = −1.
    #[test]
    fn campaign_figures_are_attributed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let show = make(
            &mut store,
            Kind::Campaign,
            &[
                ("name", "展会"),
                ("actual_cost", "10000"),
                ("goal_leads", "4"),
                ("goal_revenue", "50000"),
                ("start_date", "2026-03-01"),
            ],
        );
        let web = make(
            &mut store,
            Kind::Campaign,
            &[
                ("name", "Webinar"),
                ("actual_cost", "2000"),
                ("start_date", "2026-04-01"),
            ],
        );
        let (s, w) = (show.to_string(), web.to_string());
        let d1 = make(
            &mut store,
            Kind::Opportunity,
            &[("name", "D1"), ("stage", "closed_won"), ("amount", "30000")],
        );
        make(
            &mut store,
            Kind::Opportunity,
            &[
                ("name", "D2"),
                ("stage", "closed_won"),
                ("amount", "20000"),
                ("campaign", &s),
            ],
        );
        make(
            &mut store,
            Kind::Opportunity,
            &[
                ("name", "D3"),
                ("stage", "closed_lost"),
                ("amount", "99000"),
                ("campaign", &s),
            ],
        );
        let d4 = make(
            &mut store,
            Kind::Opportunity,
            &[
                ("name", "D4"),
                ("stage", "closed_won"),
                ("amount", "5000"),
                ("campaign", &s),
            ],
        );
        let l1 = make(
            &mut store,
            Kind::Lead,
            &[
                ("person_name", "L1"),
                ("campaign", &s),
                ("converted_opportunity", &d1.to_string()),
            ],
        );
        make(
            &mut store,
            Kind::Lead,
            &[("person_name", "L2"), ("campaign", &s)],
        );
        make(
            &mut store,
            Kind::Lead,
            &[
                ("person_name", "L3"),
                ("campaign", &w),
                ("converted_opportunity", &d4.to_string()),
            ],
        );
        let c1 = make(&mut store, Kind::Contact, &[("last_name", "C1")]);
        let c2 = make(&mut store, Kind::Contact, &[("last_name", "C2")]);
        let c3 = make(&mut store, Kind::Contact, &[("last_name", "C3")]);
        let members = store
            .add_campaign_members(show, &[l1, c1, c2, c3], None)
            .expect("members");
        store
            .set_member_status(members[0].id, "converted")
            .expect("status");
        store
            .set_member_status(members[1].id, "responded")
            .expect("status");
        store
            .set_member_status(members[2].id, "opened")
            .expect("status");

        let params = ReportParams::now();
        let r = store
            .report("campaign-response", &params)
            .expect("report")
            .to_json();
        let rows = r["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 2);
        let (a, b) = (&rows[0], &rows[1]);
        assert_eq!(a["campaign"], "展会", "by start date");
        assert_eq!(
            (a["members"].clone(), a["responded"].clone()),
            (4.into(), 2.into())
        );
        assert_eq!(a["response_rate"], 0.5);
        assert_eq!(a["leads"], 2);
        assert_eq!(a["cost_per_lead"], 500_000, "5,000.00 in minor units");
        assert_eq!(a["lead_to_won"], 0.5);
        assert_eq!(b["members"], 0);
        assert_eq!(b["response_rate"], serde_json::Value::Null);
        assert_eq!(b["cost_per_lead"], 200_000);
        assert_eq!(b["lead_to_won"], 1.0);
        // Overall: 3 leads, cost 12,000 → 4,000 per lead; 2 of 3 leads won.
        assert_eq!(r["summary"]["cost_per_lead"], 400_000);

        let r = store
            .report("campaign-roi", &params)
            .expect("report")
            .to_json();
        let rows = r["rows"].as_array().expect("rows");
        let (a, b) = (&rows[0], &rows[1]);
        assert_eq!(a["won_deals"], 3);
        assert_eq!(a["revenue"], 5_500_000);
        assert_eq!(a["roi"], 4.5);
        assert_eq!(a["leads_vs_goal"], 0.5);
        assert_eq!(a["revenue_vs_goal"], 1.1);
        assert_eq!(b["revenue"], 0);
        assert_eq!(b["roi"], -1.0);
        assert_eq!(b["leads_vs_goal"], serde_json::Value::Null, "no goal");
        // Overall: (55,000 − 12,000) / 12,000.
        let roi = r["summary"]["roi"].as_f64().expect("roi");
        assert!((roi - 43_000.0 / 12_000.0).abs() < 1e-9, "{roi}");

        let april = ReportParams {
            from: chrono::NaiveDate::from_ymd_opt(2026, 4, 1),
            ..ReportParams::now()
        };
        let r = store
            .report("campaign-roi", &april)
            .expect("report")
            .to_json();
        assert_eq!(r["rows"].as_array().expect("rows").len(), 1, "date range");
    }
}
