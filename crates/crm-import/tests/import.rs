//! Imports of messy files into a real replica: encodings, missing columns, bad values,
//! duplicates within the file and against the replica, spreadsheets with several sheets.

use std::path::Path;

use crm_import::{
    Action, ErrorReport, ImportError, ImportOptions, Mapping, RowOutcome, Source, SourceOptions,
    Summary, import,
};
use crm_model::{Edit, FieldValue, Kind};
use crm_store::{ListQuery, Store};

fn replica() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::init(dir.path(), "alice", "laptop").expect("init");
    (dir, store)
}

fn run(
    store: &mut Store,
    path: &Path,
    kind: Kind,
    source: SourceOptions,
    overrides: &[&str],
    options: ImportOptions,
) -> Result<(Summary, Vec<RowOutcome>), ImportError> {
    let mut src = Source::open(path, &source)?;
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let mapping = Mapping::build(kind, src.headers(), None, &overrides)?;
    let mut rows = Vec::new();
    let summary = import(store, &mut src, &mapping, &options, |o, _| {
        rows.push(o.clone())
    })?;
    Ok((summary, rows))
}

fn account_names(store: &Store) -> Vec<String> {
    let mut q = ListQuery::new(Kind::Account);
    q.limit = 1000;
    q.sort = Some("title".into());
    store
        .list(&q)
        .expect("list")
        .into_iter()
        .map(|r| r.title)
        .collect()
}

const MESSY: &str = "公司名称,邮箱,电话,网址,行业,备注,传真\n\
深圳星光贸易有限公司,info@star.cn,+86 755 1234 5678,www.star.cn,零售,老客户,123\n\
北京远景科技,not-an-email,010-8888 6666,,软件,,\n\
,nobody@x.cn,,,,,\n\
深圳星光贸易 有限公司,INFO@STAR.CN,,,,重复行,\n\
上海海鸥物流,ops@seagull.cn,021 5555 0000,seagull.cn,物流,,\n\
Northwind Traders,sales@northwind.com,,northwind.com,wholesale,,\n";

#[test]
fn a_gbk_file_with_chinese_headers_imports_its_good_rows_and_reports_the_rest() {
    let (dir, mut store) = replica();
    // A record already in the replica, matched by domain.
    let mut existing = Edit::new(Kind::Account);
    existing.set("name", "Northwind").expect("valid");
    existing
        .set("website", "https://northwind.com/")
        .expect("valid");
    let existing = store.create(&existing).expect("create");

    let (gbk, _, unmappable) = encoding_rs::GBK.encode(MESSY);
    assert!(!unmappable);
    let file = dir.path().join("客户.csv");
    std::fs::write(&file, &gbk).expect("write");
    assert!(
        std::str::from_utf8(&gbk).is_err(),
        "the fixture must not be UTF-8"
    );

    let outbox = store.outbox_len().expect("outbox");
    let (summary, rows) = run(
        &mut store,
        &file,
        Kind::Account,
        SourceOptions::default(),
        &[],
        ImportOptions::default(),
    )
    .expect("import");
    assert!(summary.source.contains("GB18030"), "{}", summary.source);
    assert_eq!(summary.rows, 6);
    assert_eq!(summary.created, 2, "{rows:#?}");
    assert_eq!(summary.errors, 2, "{rows:#?}");
    assert_eq!(summary.duplicates, 2, "{rows:#?}");
    assert_eq!(summary.skipped_columns, vec!["传真".to_string()]);

    let by_row = |n: usize| rows.iter().find(|r| r.row == n).expect("row");
    assert_eq!(by_row(2).action, Action::Create);
    assert_eq!(by_row(3).action, Action::Error);
    assert_eq!(by_row(3).errors[0].column, "邮箱");
    assert_eq!(by_row(3).errors[0].value, "not-an-email");
    assert_eq!(by_row(4).action, Action::Error);
    assert!(
        by_row(4).errors[0].reason.contains("name"),
        "{:?}",
        by_row(4)
    );
    // Same email (any case) and same name (spaces, legal form) as row 2.
    assert_eq!(by_row(5).action, Action::Duplicate);
    assert!(
        by_row(5)
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("row 2")),
        "{:?}",
        by_row(5)
    );
    assert_eq!(by_row(7).action, Action::Duplicate);
    assert_eq!(by_row(7).id, Some(existing.id));

    // Two records written, each its own change in the outbox; values normalised.
    assert_eq!(store.outbox_len().expect("outbox"), outbox + 2);
    assert_eq!(
        account_names(&store),
        ["Northwind", "上海海鸥物流", "深圳星光贸易有限公司"]
    );
    let star = store.get(by_row(2).id.expect("created id")).expect("get");
    assert_eq!(
        star.get("website"),
        Some(&FieldValue::Text("star.cn".into()))
    );
    assert_eq!(star.get("industry"), Some(&FieldValue::Text("零售".into())));
    assert_eq!(star.notes, "老客户");
    assert_eq!(store.history(star.id).expect("history").len(), 1);

    // The error report names row, column, value and reason.
    let report_path = dir.path().join("errors.csv");
    let mut report = ErrorReport::create(&report_path).expect("report");
    for r in &rows {
        report.add(r).expect("add");
    }
    assert_eq!(report.lines(), 2);
    report.finish().expect("finish");
    let text = std::fs::read_to_string(&report_path).expect("read");
    let text = text.trim_start_matches('\u{FEFF}');
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row,column,value,reason"));
    let first = lines.next().expect("line");
    assert!(first.starts_with("3,邮箱,not-an-email,"), "{first}");
}

#[test]
fn a_dry_run_plans_the_same_and_stores_nothing() {
    let (dir, mut store) = replica();
    let file = dir.path().join("accounts.csv");
    // UTF-8 with a byte-order mark, as Excel saves "CSV UTF-8".
    std::fs::write(&file, format!("\u{FEFF}{MESSY}")).expect("write");
    let outbox = store.outbox_len().expect("outbox");
    let dry = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    let (plan, planned) = run(
        &mut store,
        &file,
        Kind::Account,
        SourceOptions::default(),
        &[],
        dry,
    )
    .expect("dry run");
    assert!(plan.dry_run);
    assert_eq!(plan.source, "UTF-8");
    assert_eq!((plan.created, plan.errors, plan.duplicates), (3, 2, 1));
    assert_eq!(store.outbox_len().expect("outbox"), outbox);
    assert_eq!(store.count(Kind::Account, true).expect("count"), 0);
    let (done, written) = run(
        &mut store,
        &file,
        Kind::Account,
        SourceOptions::default(),
        &[],
        ImportOptions::default(),
    )
    .expect("import");
    assert_eq!(
        (done.created, done.errors, done.duplicates),
        (plan.created, plan.errors, plan.duplicates)
    );
    let actions = |rows: &[RowOutcome]| rows.iter().map(|r| (r.row, r.action)).collect::<Vec<_>>();
    assert_eq!(actions(&planned), actions(&written));
    // Importing the same file again finds every good row in the replica.
    let (again, _) = run(
        &mut store,
        &file,
        Kind::Account,
        SourceOptions::default(),
        &[],
        ImportOptions::default(),
    )
    .expect("import again");
    assert_eq!((again.created, again.duplicates), (0, 4));
}

#[test]
fn missing_columns_and_unknown_encodings_stop_before_any_row() {
    let (dir, mut store) = replica();
    let file = dir.path().join("no-name.csv");
    std::fs::write(&file, "邮箱,电话\na@b.cn,12345678\n").expect("write");
    let err = run(
        &mut store,
        &file,
        Kind::Account,
        SourceOptions::default(),
        &[],
        ImportOptions::default(),
    )
    .expect_err("no name column");
    assert!(matches!(
        err,
        ImportError::MissingRequired { field: "name", .. }
    ));
    assert!(err.to_string().contains("--map"), "{err}");
    assert!(err.is_invalid_input());

    let latin = dir.path().join("latin.csv");
    std::fs::write(&latin, b"name\nCaf\xe9 \xff\xfe\xff\n").expect("write");
    let err = run(
        &mut store,
        &latin,
        Kind::Account,
        SourceOptions::default(),
        &[],
        ImportOptions::default(),
    )
    .expect_err("unknown encoding");
    assert!(
        matches!(err, ImportError::UnknownFileEncoding { .. }),
        "{err}"
    );
    // Named explicitly, the same file reads.
    let (summary, _) = run(
        &mut store,
        &latin,
        Kind::Account,
        SourceOptions {
            encoding: Some("windows-1252".into()),
            sheet: None,
        },
        &[],
        ImportOptions::default(),
    )
    .expect("import latin-1");
    assert_eq!(summary.created, 1);
    assert!(account_names(&store)[0].starts_with("Café"));
    assert_eq!(store.count(Kind::Account, true).expect("count"), 1);
}

#[test]
fn update_existing_merges_rows_into_the_matching_records() {
    let (dir, mut store) = replica();
    let mut e = Edit::new(Kind::Contact);
    e.set("last_name", "王").expect("valid");
    e.set("first_name", "芳").expect("valid");
    e.set("emails", "wang.fang@star.cn").expect("valid");
    e.tag("vip").expect("valid");
    let wang = store.create(&e).expect("create");
    let file = dir.path().join("contacts.csv");
    std::fs::write(
        &file,
        "姓,名,邮箱,手机,职位,标签\n王,芳,Wang.Fang@star.cn,138 0013 8000,采购经理,展会\n李,雷,li.lei@star.cn,,,\n",
    )
    .expect("write");
    let options = ImportOptions {
        update_existing: true,
        ..ImportOptions::default()
    };
    let (summary, rows) = run(
        &mut store,
        &file,
        Kind::Contact,
        SourceOptions::default(),
        &[],
        options,
    )
    .expect("import");
    assert_eq!((summary.updated, summary.created), (1, 1), "{rows:#?}");
    assert_eq!(rows[0].id, Some(wang.id));
    let merged = store.get(wang.id).expect("get");
    assert_eq!(
        merged.get("title"),
        Some(&FieldValue::Text("采购经理".into()))
    );
    assert_eq!(
        merged.get("phones"),
        Some(&FieldValue::Set(["138 0013 8000".to_string()].into()))
    );
    assert!(merged.tags.contains("vip") && merged.tags.contains("展会"));
    assert_eq!(store.history(wang.id).expect("history").len(), 2);
}

#[test]
fn a_bad_reference_fails_its_row_at_write_time_and_the_others_are_kept() {
    let (dir, mut store) = replica();
    let file = dir.path().join("contacts.csv");
    let ghost = crm_model::RecordId::new();
    std::fs::write(
        &file,
        format!("last_name,account\n张,{ghost}\n李,\n赵,not-an-id\n"),
    )
    .expect("write");
    let (summary, rows) = run(
        &mut store,
        &file,
        Kind::Contact,
        SourceOptions::default(),
        &[],
        ImportOptions::default(),
    )
    .expect("import");
    assert_eq!((summary.created, summary.errors), (1, 2), "{rows:#?}");
    assert!(
        rows[0].errors[0].reason.contains("no such record"),
        "{:?}",
        rows[0]
    );
    assert_eq!(store.count(Kind::Contact, true).expect("count"), 1);
}

#[test]
fn a_workbook_with_several_sheets_reads_the_named_one() {
    let (dir, mut store) = replica();
    let path = dir.path().join("crm.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    {
        let sheet = book.add_worksheet();
        sheet.set_name("说明").expect("name");
        sheet
            .write_string(0, 0, "本工作簿包含客户数据")
            .expect("write");
    }
    {
        let sheet = book.add_worksheet();
        sheet.set_name("客户").expect("name");
        for (c, h) in ["名称", "员工数", "电话", "网址"].iter().enumerate() {
            sheet.write_string(0, c as u16, *h).expect("write");
        }
        sheet.write_string(1, 0, "杭州云帆科技").expect("write");
        sheet.write_number(1, 1, 120.0).expect("write");
        sheet.write_number(1, 2, 13_800_138_000.0).expect("write");
        sheet.write_string(1, 3, "yunfan.cn").expect("write");
        sheet
            .write_string(2, 0, "Bad Employees Ltd")
            .expect("write");
        sheet.write_string(2, 1, "many").expect("write");
    }
    book.save(&path).expect("save");

    let err = run(
        &mut store,
        &path,
        Kind::Account,
        SourceOptions {
            encoding: None,
            sheet: Some("Accounts".into()),
        },
        &[],
        ImportOptions::default(),
    )
    .expect_err("no such sheet");
    let text = err.to_string();
    assert!(text.contains("说明") && text.contains("客户"), "{text}");

    let (summary, rows) = run(
        &mut store,
        &path,
        Kind::Account,
        SourceOptions {
            encoding: None,
            sheet: Some("客户".into()),
        },
        &[],
        ImportOptions::default(),
    )
    .expect("import");
    assert_eq!((summary.created, summary.errors), (1, 1), "{rows:#?}");
    assert_eq!(rows[1].row, 3);
    assert_eq!(rows[1].errors[0].column, "员工数");
    let id = rows[0].id.expect("id");
    let record = store.get(id).expect("get");
    assert_eq!(record.get("employees"), Some(&FieldValue::Int(120)));
    assert_eq!(
        record.get("phones"),
        Some(&FieldValue::Set(["13800138000".to_string()].into()))
    );
}
