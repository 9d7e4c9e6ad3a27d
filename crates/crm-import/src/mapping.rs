//! Which column of the file fills which field: automatic by header (field names, then the
//! synonyms table), then a saved template, then `--map COLUMN=FIELD` overrides, in rising
//! priority. Templates are JSON files in the replica's data directory
//! (`DIR/import-templates/NAME.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crm_model::{FieldDef, FieldType, Kind};
use serde::{Deserialize, Serialize};

use crate::error::{ImportError, Result};
use crate::synonyms::{SYNONYMS, normalize_header};

/// Where a column's values go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Field(&'static FieldDef),
    /// `custom.NAME`.
    Custom(String),
    /// Comma-separated tags.
    Tags,
    Notes,
    /// The column is not imported.
    Skip,
}

impl Target {
    /// The name used in templates and `--map`: a field name, `custom.NAME`, `tags`, `notes`
    /// or `-`.
    pub fn name(&self) -> String {
        match self {
            Target::Field(f) => f.name.to_string(),
            Target::Custom(name) => format!("custom.{name}"),
            Target::Tags => "tags".into(),
            Target::Notes => "notes".into(),
            Target::Skip => "-".into(),
        }
    }

    /// Parses a target name for `kind`.
    pub fn parse(kind: Kind, name: &str) -> Result<Target> {
        let name = name.trim();
        let no_such = || ImportError::NoSuchField {
            kind,
            target: name.to_string(),
            known: kind
                .schema()
                .all_fields()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", "),
        };
        Ok(match name {
            "" | "-" => Target::Skip,
            "tags" => Target::Tags,
            "notes" => Target::Notes,
            _ => match name.strip_prefix("custom.") {
                Some(custom)
                    if !custom.is_empty()
                        && custom.len() <= 64
                        && custom.chars().all(|c| c.is_alphanumeric() || c == '_') =>
                {
                    Target::Custom(custom.to_string())
                }
                Some(_) => return Err(no_such()),
                None => Target::Field(kind.schema().field(name).ok_or_else(no_such)?),
            },
        })
    }
}

/// How the columns of one file map onto one record kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub kind: Kind,
    /// One entry per column of the file, in order: the header and where it goes.
    pub columns: Vec<(String, Target)>,
}

/// A saved mapping: column header → target name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub kind: String,
    pub columns: BTreeMap<String, String>,
}

impl Mapping {
    /// Maps `headers` onto `kind`: automatic matches, overridden by `template`, overridden
    /// by `overrides` (`COLUMN=FIELD`). Fails when a column named in an override does not
    /// exist, a target is not a field, or a required field (without a default) gets no column.
    pub fn build(
        kind: Kind,
        headers: &[String],
        template: Option<&Template>,
        overrides: &[String],
    ) -> Result<Mapping> {
        let mut columns: Vec<(String, Target)> = headers
            .iter()
            .map(|h| (h.clone(), auto_target(kind, h)))
            .collect();
        // A single-valued field filled automatically by two columns keeps the first.
        let mut seen = Vec::new();
        for (_, target) in &mut columns {
            if let Target::Field(f) = target
                && !matches!(f.ty, FieldType::Set(_))
            {
                if seen.contains(&f.name) {
                    *target = Target::Skip;
                } else {
                    seen.push(f.name);
                }
            }
        }
        let find = |columns: &[(String, Target)], column: &str| {
            let wanted = column.trim();
            columns.iter().position(|(h, _)| h == wanted).or_else(|| {
                columns
                    .iter()
                    .position(|(h, _)| normalize_header(h) == normalize_header(wanted))
            })
        };
        if let Some(t) = template {
            for (column, target) in &t.columns {
                // Template columns missing from this file are fine: templates outlive files.
                if let Some(i) = find(&columns, column) {
                    columns[i].1 = Target::parse(kind, target)?;
                }
            }
        }
        for o in overrides {
            let (column, target) = o
                .rsplit_once('=')
                .ok_or_else(|| ImportError::BadMapping(o.clone()))?;
            let i = find(&columns, column).ok_or_else(|| ImportError::NoSuchColumn {
                column: column.to_string(),
                columns: headers.to_vec(),
            })?;
            columns[i].1 = Target::parse(kind, target)?;
        }
        let mapping = Mapping { kind, columns };
        for field in kind.schema().all_fields() {
            if field.required && field.default.is_none() && !mapping.maps(field.name) {
                return Err(ImportError::MissingRequired {
                    kind,
                    field: field.name,
                    columns: headers.to_vec(),
                });
            }
        }
        Ok(mapping)
    }

    /// Whether some column fills `field`.
    pub fn maps(&self, field: &str) -> bool {
        self.columns
            .iter()
            .any(|(_, t)| matches!(t, Target::Field(f) if f.name == field))
    }

    /// The columns that are not imported.
    pub fn skipped(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, t)| *t == Target::Skip)
            .map(|(h, _)| h.as_str())
            .collect()
    }

    pub fn to_template(&self) -> Template {
        Template {
            kind: self.kind.as_str().to_string(),
            columns: self
                .columns
                .iter()
                .filter(|(h, _)| !h.is_empty())
                .map(|(h, t)| (h.clone(), t.name()))
                .collect(),
        }
    }
}

/// The automatic target of a header: a field whose name (or name with spaces) it is, else
/// the first field of the synonyms table that the kind has.
fn auto_target(kind: Kind, header: &str) -> Target {
    let h = normalize_header(header);
    if h.is_empty() {
        return Target::Skip;
    }
    let schema = kind.schema();
    // The common fields (owner, teams, merged_into) hold ids of this workspace's users, teams
    // and records; a file's column of that name (an export of another replica, a name) is
    // only imported when mapped explicitly.
    if let Some(f) = schema.fields.iter().find(|f| normalize_header(f.name) == h) {
        return Target::Field(f);
    }
    if let Some(custom) = header.trim().strip_prefix("custom.")
        && let Ok(t) = Target::parse(kind, &format!("custom.{custom}"))
    {
        return t;
    }
    for (fields, headers) in SYNONYMS {
        if headers.iter().any(|s| normalize_header(s) == h) {
            for name in *fields {
                match *name {
                    "tags" => return Target::Tags,
                    "notes" => return Target::Notes,
                    _ => {
                        if let Some(f) = schema.field(name) {
                            return Target::Field(f);
                        }
                    }
                }
            }
        }
    }
    Target::Skip
}

/// The directory of a replica's saved mappings.
pub fn templates_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("import-templates")
}

fn template_path(data_dir: &Path, name: &str) -> Result<PathBuf> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(ImportError::BadTemplateName(name.to_string()));
    }
    Ok(templates_dir(data_dir).join(format!("{name}.json")))
}

/// Loads the template `name` of the replica in `data_dir`, checking it is for `kind`.
pub fn load_template(data_dir: &Path, name: &str, kind: Kind) -> Result<Template> {
    let path = template_path(data_dir, name)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImportError::NoSuchTemplate {
                name: name.to_string(),
                dir: templates_dir(data_dir),
            });
        }
        Err(source) => return Err(ImportError::Io { path, source }),
    };
    let template: Template =
        serde_json::from_str(&text).map_err(|source| ImportError::BadTemplate {
            path: path.clone(),
            source,
        })?;
    if template.kind != kind.as_str() {
        return Err(ImportError::TemplateKind {
            name: name.to_string(),
            template_kind: template.kind,
            kind,
        });
    }
    Ok(template)
}

/// Saves `template` as `name` (replacing one of that name) and returns its path. Written to
/// a temporary file first, so a crash never leaves half a template.
pub fn save_template(data_dir: &Path, name: &str, template: &Template) -> Result<PathBuf> {
    let path = template_path(data_dir, name)?;
    let dir = templates_dir(data_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let text =
        serde_json::to_string_pretty(template).map_err(|source| ImportError::BadTemplate {
            path: path.clone(),
            source,
        })?;
    let tmp = dir.join(format!(".{name}.json.tmp"));
    std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    fn targets(m: &Mapping) -> Vec<String> {
        m.columns.iter().map(|(_, t)| t.name()).collect()
    }

    #[test]
    fn chinese_and_english_headers_map_automatically() {
        let m = Mapping::build(
            Kind::Account,
            &headers(&[
                "公司名称",
                "邮箱",
                "电话",
                "手机",
                "网址",
                "行业",
                "备注",
                "标签",
                "传真",
            ]),
            None,
            &[],
        )
        .expect("mapping");
        assert_eq!(
            targets(&m),
            [
                "name", "emails", "phones", "phones", "website", "industry", "notes", "tags", "-"
            ]
        );
        let lead = Mapping::build(
            Kind::Lead,
            &headers(&["Name", "Company", "E-Mail", "Phone"]),
            None,
            &[],
        )
        .expect("mapping");
        assert_eq!(
            targets(&lead),
            ["person_name", "company_name", "email", "phone"]
        );
    }

    #[test]
    fn overrides_and_templates_win_and_are_checked() {
        let h = headers(&["Firma", "Mail"]);
        assert!(matches!(
            Mapping::build(Kind::Account, &h, None, &[]),
            Err(ImportError::MissingRequired { field: "name", .. })
        ));
        let m = Mapping::build(Kind::Account, &h, None, &["Firma=name".into()]).expect("ok");
        assert_eq!(targets(&m), ["name", "emails"]);
        assert!(matches!(
            Mapping::build(Kind::Account, &h, None, &["Nope=name".into()]),
            Err(ImportError::NoSuchColumn { .. })
        ));
        assert!(matches!(
            Mapping::build(Kind::Account, &h, None, &["Firma=colour".into()]),
            Err(ImportError::NoSuchField { .. })
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        save_template(dir.path(), "erp", &m.to_template()).expect("save");
        let t = load_template(dir.path(), "erp", Kind::Account).expect("load");
        let again = Mapping::build(Kind::Account, &h, Some(&t), &["Mail=-".into()]).expect("ok");
        assert_eq!(targets(&again), ["name", "-"]);
        assert!(matches!(
            load_template(dir.path(), "erp", Kind::Contact),
            Err(ImportError::TemplateKind { .. })
        ));
        assert!(matches!(
            load_template(dir.path(), "../x", Kind::Account),
            Err(ImportError::BadTemplateName(_))
        ));
    }
}
