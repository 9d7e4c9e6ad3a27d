//! `crm report [NAME]`: the catalogue of reports, or one report as a table or `--json`.

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::ArgMatches;
use crm_store::reports::{self, Report, ReportParams, Unit};
use serde_json::{Value as Json, json};

use super::open;
use crate::exit::Usage;
use crate::output;

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let Some(name) = m.get_one::<String>("name") else {
        return catalogue(as_json);
    };
    let params = ReportParams {
        from: date(m, "from")?,
        to: date(m, "to")?,
        ..ReportParams::now()
    };
    if let (Some(from), Some(to)) = (params.from, params.to)
        && from > to
    {
        return Err(Usage(format!("--from {from} is after --to {to}")).into());
    }
    let store = open(m)?;
    let report = store
        .report(name, &params)
        .with_context(|| format!("report {name}"))?;
    if as_json {
        output::json(&report.to_json());
    } else {
        print(&report);
    }
    Ok(())
}

fn date(m: &ArgMatches, arg: &str) -> Result<Option<NaiveDate>> {
    m.get_one::<String>(arg)
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                Usage(format!("--{arg} {s:?}: expected a date like 2026-11-30")).into()
            })
        })
        .transpose()
}

fn catalogue(as_json: bool) -> Result<()> {
    if as_json {
        output::json(&json!(
            reports::catalogue()
                .map(|d| json!({"name": d.name, "group": d.group, "title": d.title, "about": d.about}))
                .collect::<Vec<_>>()
        ));
    } else {
        output::table(
            &["report", "group", "what it shows"],
            reports::catalogue()
                .map(|d| {
                    vec![
                        d.name.to_string(),
                        d.group.to_string(),
                        output::one_line(d.about, 90),
                    ]
                })
                .collect(),
        );
    }
    Ok(())
}

fn print(report: &Report) {
    println!("{}", report.title);
    let header: Vec<&str> = report.columns.iter().map(|c| c.label).collect();
    output::table(
        &header,
        report
            .rows
            .iter()
            .map(|row| {
                report
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| cell(c.unit, v))
                    .collect()
            })
            .collect(),
    );
    if !report.summary.is_empty() {
        output::pairs(
            report
                .summary
                .iter()
                .map(|f| vec![f.label.to_string(), cell(f.unit, &f.value)])
                .collect(),
        );
    }
}

/// A cell as people read it: money with two decimals and thousands separators, ratios as
/// percentages, durations with their unit; "–" where a figure is undefined.
pub(crate) fn cell(unit: Unit, value: &Json) -> String {
    if value.is_null() {
        return "–".to_string();
    }
    let number = value.as_f64();
    match (unit, number) {
        (Unit::Money, Some(minor)) => money(minor),
        (Unit::Ratio, Some(r)) => format!("{:.1}%", r * 100.0),
        (Unit::Hours, Some(h)) => format!("{h:.1} h"),
        (Unit::Days, Some(d)) => format!("{d:.1} d"),
        (Unit::Number, Some(n)) => format!("{n:.1}"),
        (Unit::Count, Some(n)) => format!("{n}"),
        _ => match value {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

fn money(minor: f64) -> String {
    let cents = minor.round() as i64;
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let units = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}", cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_formatted_by_unit() {
        assert_eq!(cell(Unit::Money, &json!(123_456_789)), "1,234,567.89");
        assert_eq!(cell(Unit::Money, &json!(-5)), "-0.05");
        assert_eq!(cell(Unit::Ratio, &json!(0.4567)), "45.7%");
        assert_eq!(cell(Unit::Hours, &json!(2.25)), "2.2 h");
        assert_eq!(cell(Unit::Count, &json!(3)), "3");
        assert_eq!(cell(Unit::Ratio, &Json::Null), "–");
        assert_eq!(cell(Unit::Text, &json!("proposal")), "proposal");
    }
}
