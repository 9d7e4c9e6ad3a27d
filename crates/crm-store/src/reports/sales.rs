//! Sales reports: the pipeline and how deals move through it.

use crm_model::kinds::opportunity::STAGES;
use rusqlite::params_from_iter;
use serde_json::json;

use super::{Column, Figure, Report, ReportDef, ReportParams, Unit, date_range, ratio};
use crate::{Result, Store};

pub(super) const REPORTS: &[ReportDef] = &[ReportDef {
    name: "funnel",
    group: "sales",
    title: "Pipeline funnel",
    about: "Open and closed opportunities per stage: count, amount and weighted amount \
            (amount × the stage's default probability, or the deal's override)",
    run: funnel,
}];

/// Count, amount and weighted amount per stage, every stage listed in pipeline order even when
/// empty; the date range applies to the expected close date.
fn funnel(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("f_close_date", params);
    let sql = format!(
        "SELECT f_stage, count(*), coalesce(sum(f_amount), 0), \
                coalesce(sum(f_amount * coalesce(f_probability, \
                    CASE f_stage {probabilities} ELSE 0 END) / 100.0), 0) \
         FROM rec_opportunity WHERE archived = 0 AND f_stage IS NOT NULL{range} \
         GROUP BY f_stage",
        probabilities = STAGES
            .iter()
            .map(|s| format!(
                "WHEN '{s}' THEN {}",
                crm_model::kinds::opportunity::default_probability(s).unwrap_or(0)
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut by_stage = std::collections::HashMap::new();
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            (
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
            ),
        ))
    })?;
    for row in rows {
        let (stage, figures) = row?;
        by_stage.insert(stage, figures);
    }
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
}
