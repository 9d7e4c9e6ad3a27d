//! The one table of column headers the import recognises besides the field names themselves,
//! in English and Chinese. A header is compared after [`normalize_header`]; each entry lists
//! the fields it may mean, in order, and the first one the record kind has wins (so `公司`
//! is an account's `name` but a lead's `company_name`).

/// `(fields it may mean, headers)`. The pseudo-fields `tags` and `notes` are the record's
/// tags and notes.
pub(crate) const SYNONYMS: &[(&[&str], &[&str])] = &[
    (
        &["name", "company_name"],
        &[
            "company",
            "company name",
            "account",
            "account name",
            "organization",
            "organisation",
            "customer",
            "customer name",
            "名称",
            "公司",
            "公司名称",
            "公司名",
            "客户",
            "客户名称",
            "企业",
            "企业名称",
            "单位",
            "单位名称",
            "机构名称",
        ],
    ),
    (
        &["person_name", "last_name"],
        &[
            "name",
            "full name",
            "contact",
            "contact name",
            "person",
            "姓名",
            "联系人",
            "联系人姓名",
            "名字",
        ],
    ),
    (&["first_name"], &["first name", "given name", "名"]),
    (
        &["last_name"],
        &["last name", "surname", "family name", "姓"],
    ),
    (
        &["email", "emails"],
        &[
            "email",
            "e-mail",
            "mail",
            "email address",
            "邮箱",
            "电子邮箱",
            "电子邮件",
            "邮件",
            "邮箱地址",
        ],
    ),
    (
        &["phone", "phones"],
        &[
            "phone",
            "telephone",
            "tel",
            "mobile",
            "cell",
            "phone number",
            "电话",
            "手机",
            "手机号",
            "手机号码",
            "联系电话",
            "电话号码",
            "座机",
        ],
    ),
    (
        &["website"],
        &[
            "web", "url", "site", "homepage", "domain", "网址", "网站", "官网", "主页", "域名",
        ],
    ),
    (&["industry"], &["sector", "行业", "所属行业"]),
    (
        &["title"],
        &["job title", "position", "职位", "职务", "头衔"],
    ),
    (&["department"], &["dept", "部门"]),
    (
        &["source"],
        &["lead source", "来源", "线索来源", "客户来源"],
    ),
    (
        &["billing_address"],
        &["address", "地址", "公司地址", "办公地址"],
    ),
    (
        &["employees"],
        &["employee count", "staff", "员工数", "员工人数"],
    ),
    (&["annual_revenue"], &["revenue", "年收入", "营业额"]),
    (&["short_name"], &["abbreviation", "简称"]),
    (&["description"], &["描述", "简介"]),
    (&["birthday"], &["date of birth", "dob", "生日", "出生日期"]),
    (&["grade"], &["客户等级", "等级"]),
    (&["type"], &["类型", "客户类型"]),
    (&["size"], &["规模", "公司规模"]),
    (&["status"], &["状态"]),
    (&["rating"], &["评级"]),
    (&["tags"], &["tags", "tag", "labels", "label", "标签"]),
    (
        &["notes"],
        &[
            "notes", "note", "remarks", "remark", "comment", "comments", "备注", "说明",
        ],
    ),
];

/// A header reduced for comparison: lowercase, without spaces, `_`, `-`, `.`, `*`,
/// parentheses and colons (ASCII and full-width), so `E-Mail`, `e_mail` and `邮箱：` match.
pub(crate) fn normalize_header(header: &str) -> String {
    header
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| {
            !c.is_whitespace()
                && !matches!(
                    c,
                    '_' | '-' | '.' | '*' | '(' | ')' | ':' | '：' | '（' | '）' | '\u{FEFF}'
                )
        })
        .collect()
}
