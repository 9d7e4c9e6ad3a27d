//! Word lists the generated names, addresses and texts are made of: Chinese with their
//! pinyin (for email addresses and domains) and English.

/// A Chinese city: name, pinyin, province prefix for addresses, telephone area code.
pub(crate) struct City {
    pub(crate) name: &'static str,
    pub(crate) pinyin: &'static str,
    pub(crate) province: &'static str,
    pub(crate) area_code: &'static str,
}

const fn city(
    name: &'static str,
    pinyin: &'static str,
    province: &'static str,
    area_code: &'static str,
) -> City {
    City {
        name,
        pinyin,
        province,
        area_code,
    }
}

pub(crate) const CITIES: &[City] = &[
    city("深圳", "shenzhen", "广东省", "755"),
    city("广州", "guangzhou", "广东省", "20"),
    city("东莞", "dongguan", "广东省", "769"),
    city("上海", "shanghai", "", "21"),
    city("北京", "beijing", "", "10"),
    city("杭州", "hangzhou", "浙江省", "571"),
    city("宁波", "ningbo", "浙江省", "574"),
    city("苏州", "suzhou", "江苏省", "512"),
    city("南京", "nanjing", "江苏省", "25"),
    city("成都", "chengdu", "四川省", "28"),
    city("武汉", "wuhan", "湖北省", "27"),
    city("厦门", "xiamen", "福建省", "592"),
    city("天津", "tianjin", "", "22"),
    city("重庆", "chongqing", "", "23"),
    city("西安", "xian", "陕西省", "29"),
    city("青岛", "qingdao", "山东省", "532"),
];

/// Chinese brand words of company names, with pinyin.
pub(crate) const CN_BRANDS: &[(&str, &str)] = &[
    ("星光", "xingguang"),
    ("华信", "huaxin"),
    ("远航", "yuanhang"),
    ("金桥", "jinqiao"),
    ("宏达", "hongda"),
    ("瑞丰", "ruifeng"),
    ("恒通", "hengtong"),
    ("新元", "xinyuan"),
    ("天成", "tiancheng"),
    ("博远", "boyuan"),
    ("蓝海", "lanhai"),
    ("鼎盛", "dingsheng"),
    ("万象", "wanxiang"),
    ("嘉禾", "jiahe"),
    ("永康", "yongkang"),
    ("明德", "mingde"),
    ("云帆", "yunfan"),
    ("海川", "haichuan"),
    ("启明", "qiming"),
    ("润泽", "runze"),
    ("长青", "changqing"),
    ("锦程", "jincheng"),
    ("盛世", "shengshi"),
    ("安泰", "antai"),
    ("德润", "derun"),
    ("凯达", "kaida"),
    ("融汇", "ronghui"),
    ("普瑞", "purui"),
    ("青松", "qingsong"),
    ("鸿运", "hongyun"),
    ("百川", "baichuan"),
    ("朗润", "langrun"),
    ("聚力", "juli"),
    ("晨曦", "chenxi"),
    ("华泰", "huatai"),
    ("利民", "limin"),
    ("信达", "xinda"),
    ("众诚", "zhongcheng"),
    ("同创", "tongchuang"),
    ("卓越", "zhuoyue"),
];

/// A line of business: Chinese trade word (with pinyin), English trade word, and the
/// `industry` value accounts of that trade get.
pub(crate) struct Trade {
    pub(crate) cn: &'static str,
    pub(crate) pinyin: &'static str,
    pub(crate) en: &'static str,
    pub(crate) industry: &'static str,
}

const fn trade(
    cn: &'static str,
    pinyin: &'static str,
    en: &'static str,
    industry: &'static str,
) -> Trade {
    Trade {
        cn,
        pinyin,
        en,
        industry,
    }
}

pub(crate) const TRADES: &[Trade] = &[
    trade("贸易", "maoyi", "Traders", "wholesale"),
    trade("科技", "keji", "Software", "software"),
    trade("电子", "dianzi", "Electronics", "electronics"),
    trade("物流", "wuliu", "Logistics", "logistics"),
    trade("医疗器械", "yiliao", "Health", "healthcare"),
    trade("教育科技", "jiaoyu", "Learning", "education"),
    trade("食品", "shipin", "Foods", "food_beverage"),
    trade("机械制造", "jixie", "Manufacturing", "manufacturing"),
    trade("精密制造", "jingmi", "Industries", "manufacturing"),
    trade("新能源", "nengyuan", "Energy", "energy"),
    trade("建设工程", "jianshe", "Builders", "construction"),
    trade("汽车零部件", "qipei", "Motors", "automotive"),
    trade("通信", "tongxin", "Telecom", "telecom"),
    trade("投资", "touzi", "Capital", "finance"),
    trade("服饰", "fushi", "Apparel", "apparel"),
    trade("化工", "huagong", "Chemicals", "chemicals"),
];

pub(crate) const CN_SUFFIXES: &[&str] = &["有限公司", "有限公司", "股份有限公司", "集团有限公司"];

pub(crate) const EN_NAMES: &[&str] = &[
    "Northwind",
    "Blue Harbor",
    "Silverline",
    "Redwood",
    "Summit",
    "Evergreen",
    "Brightwater",
    "Ironbridge",
    "Oakridge",
    "Pinecrest",
    "Harborview",
    "Crescent",
    "Stonegate",
    "Westfield",
    "Goldleaf",
    "Maple",
    "Riverbend",
    "Clearview",
    "Highland",
    "Lakeside",
    "Sterling",
    "Falcon",
    "Granite",
    "Aurora",
    "Beacon",
    "Cobalt",
    "Meridian",
    "Orchard",
    "Pioneer",
    "Vertex",
    "Keystone",
    "Bluestone",
];

/// English company suffix, top-level domain, phone prefix, city and country.
pub(crate) struct Place {
    pub(crate) suffix: &'static str,
    pub(crate) tld: &'static str,
    pub(crate) phone: &'static str,
    pub(crate) street: &'static str,
    pub(crate) city: &'static str,
}

const fn place(
    suffix: &'static str,
    tld: &'static str,
    phone: &'static str,
    street: &'static str,
    city: &'static str,
) -> Place {
    Place {
        suffix,
        tld,
        phone,
        street,
        city,
    }
}

pub(crate) const PLACES: &[Place] = &[
    place("Ltd", "co.uk", "+44 20 7946", "Market Street", "London, UK"),
    place(
        "plc",
        "co.uk",
        "+44 161 496",
        "King Street",
        "Manchester, UK",
    ),
    place(
        "Inc.",
        "com",
        "+1 415 555",
        "Mission Street",
        "San Francisco, CA, USA",
    ),
    place("LLC", "com", "+1 212 555", "Broadway", "New York, NY, USA"),
    place(
        "Corporation",
        "com",
        "+1 312 555",
        "Wacker Drive",
        "Chicago, IL, USA",
    ),
    place(
        "GmbH",
        "de",
        "+49 30 5557",
        "Friedrichstraße",
        "Berlin, Germany",
    ),
    place(
        "Pte. Ltd.",
        "com.sg",
        "+65 6555",
        "Robinson Road",
        "Singapore",
    ),
    place(
        "Pty Ltd",
        "com.au",
        "+61 2 5550",
        "George Street",
        "Sydney, Australia",
    ),
    place(
        "Ltd",
        "com.hk",
        "+852 5550",
        "Queen's Road Central",
        "Hong Kong",
    ),
];

pub(crate) const CN_ZONES: &[&str] = &[
    "高新区",
    "经济技术开发区",
    "工业园区",
    "自贸区",
    "中心城区",
    "科学城",
];
pub(crate) const CN_ROADS: &[&str] = &[
    "科技园路",
    "人民路",
    "建设路",
    "中山路",
    "解放路",
    "滨江大道",
    "创业路",
    "学府路",
    "金融街",
    "长江路",
];

/// Chinese surnames with pinyin.
pub(crate) const CN_SURNAMES: &[(&str, &str)] = &[
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
    ("何", "he"),
    ("林", "lin"),
    ("罗", "luo"),
    ("高", "gao"),
    ("郑", "zheng"),
    ("梁", "liang"),
    ("谢", "xie"),
    ("宋", "song"),
    ("欧阳", "ouyang"),
];

/// Chinese given names with pinyin.
pub(crate) const CN_GIVEN: &[(&str, &str)] = &[
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("秀英", "xiuying"),
    ("建华", "jianhua"),
    ("晓燕", "xiaoyan"),
    ("志强", "zhiqiang"),
    ("海燕", "haiyan"),
    ("子涵", "zihan"),
    ("浩然", "haoran"),
    ("雨桐", "yutong"),
    ("思远", "siyuan"),
    ("嘉怡", "jiayi"),
    ("俊杰", "junjie"),
    ("欣怡", "xinyi"),
];

pub(crate) const EN_FIRST: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Susan",
    "Emma",
    "Oliver",
    "Sophia",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Charlotte",
    "Daniel",
    "Grace",
    "Thomas",
    "Hannah",
    "Priya",
    "Ahmed",
    "Mei",
];

pub(crate) const EN_LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Anderson", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Walker", "Hall", "Young", "King", "Wright", "Green", "Baker", "Carter", "Mitchell", "O'Brien",
    "Patel", "Müller",
];

/// A job: Chinese title and department, English title and department, and whether the
/// holder usually decides purchases.
pub(crate) struct Job {
    pub(crate) cn_title: &'static str,
    pub(crate) cn_dept: &'static str,
    pub(crate) en_title: &'static str,
    pub(crate) en_dept: &'static str,
    pub(crate) decides: bool,
}

const fn job(
    cn_title: &'static str,
    cn_dept: &'static str,
    en_title: &'static str,
    en_dept: &'static str,
    decides: bool,
) -> Job {
    Job {
        cn_title,
        cn_dept,
        en_title,
        en_dept,
        decides,
    }
}

pub(crate) const JOBS: &[Job] = &[
    job(
        "总经理",
        "总经办",
        "Chief Executive Officer",
        "Executive",
        true,
    ),
    job(
        "采购经理",
        "采购部",
        "Purchasing Manager",
        "Procurement",
        true,
    ),
    job("采购专员", "采购部", "Buyer", "Procurement", false),
    job(
        "财务总监",
        "财务部",
        "Chief Financial Officer",
        "Finance",
        true,
    ),
    job("IT经理", "信息技术部", "IT Director", "IT", true),
    job("销售总监", "销售部", "Head of Sales", "Sales", false),
    job(
        "运营主管",
        "运营部",
        "Operations Manager",
        "Operations",
        false,
    ),
    job(
        "技术总监",
        "技术部",
        "Chief Technology Officer",
        "Engineering",
        true,
    ),
    job(
        "行政主管",
        "行政部",
        "Office Manager",
        "Administration",
        false,
    ),
    job("项目经理", "项目部", "Project Manager", "Operations", false),
    job("工程师", "技术部", "Engineer", "Engineering", false),
];

pub(crate) const CN_ACCOUNT_TAGS: &[&str] = &[
    "重点客户",
    "华南",
    "华东",
    "华北",
    "西南",
    "政府项目",
    "年框客户",
    "渠道",
    "出口",
    "上市公司",
];
pub(crate) const EN_ACCOUNT_TAGS: &[&str] = &[
    "export",
    "channel",
    "enterprise",
    "smb",
    "renewal-2027",
    "strategic",
    "partner-program",
    "apac",
    "emea",
];

pub(crate) const ACCOUNT_SOURCES: &[&str] = &[
    "referral",
    "trade_show",
    "website",
    "cold_call",
    "partner",
    "campaign",
    "existing_customer",
];

pub(crate) const CN_PROJECTS: &[&str] = &[
    "年度采购框架协议",
    "数字化升级项目",
    "二期扩容",
    "设备更新",
    "年度维保续约",
    "新工厂配套",
    "系统集成项目",
    "华南区域推广",
];
pub(crate) const EN_PROJECTS: &[&str] = &[
    "Annual supply agreement",
    "Platform upgrade",
    "Phase 2 expansion",
    "Fleet renewal",
    "Support renewal",
    "New site rollout",
    "Integration project",
    "EMEA pilot",
];

pub(crate) const COMPETITORS: &[&str] = &[
    "Salesforce",
    "HubSpot",
    "纷享销客",
    "销售易",
    "Zoho",
    "Odoo",
    "本地集成商",
    "in-house build",
];

pub(crate) const CN_NEXT_STEPS: &[&str] = &[
    "发送报价单",
    "安排产品演示",
    "约见采购负责人",
    "提交技术方案",
    "等待客户内部审批",
    "准备合同草稿",
];
pub(crate) const EN_NEXT_STEPS: &[&str] = &[
    "Send quote",
    "Schedule product demo",
    "Meet the buyer",
    "Submit technical proposal",
    "Wait for internal approval",
    "Draft the contract",
];

pub(crate) const CN_TOPICS: &[&str] = &[
    "需求确认",
    "报价跟进",
    "合同条款",
    "交付计划",
    "付款进度",
    "售后回访",
    "新品介绍",
];
pub(crate) const EN_TOPICS: &[&str] = &[
    "requirements",
    "quote follow-up",
    "contract terms",
    "delivery plan",
    "payment status",
    "customer check-in",
    "new product intro",
];

pub(crate) const CN_TASKS: &[&str] = &[
    "准备报价单",
    "发送合同草稿",
    "整理会议纪要",
    "确认发货日期",
    "催收尾款",
    "提交投标文件",
    "安排技术交流",
];
pub(crate) const EN_TASKS: &[&str] = &[
    "Prepare the quote",
    "Send the contract draft",
    "Write up meeting notes",
    "Confirm the delivery date",
    "Chase the overdue invoice",
    "Submit the tender documents",
    "Book a technical workshop",
];

pub(crate) const CN_OUTCOMES: &[&str] = &[
    "客户确认需求，下周发送报价",
    "对方在出差，约定下周再联系",
    "客户对价格有顾虑",
    "已同意安排演示",
];
pub(crate) const EN_OUTCOMES: &[&str] = &[
    "Needs confirmed; quote to follow next week",
    "Left a voicemail",
    "Concerned about price",
    "Agreed to a demo",
];

/// Ticket subjects: Chinese, English, and the ticket type they are.
pub(crate) const TICKET_SUBJECTS: &[(&str, &str, &str)] = &[
    (
        "打印机无法连接网络",
        "Printer cannot connect to the network",
        "incident",
    ),
    (
        "发票抬头需要修改",
        "Invoice shows the wrong company name",
        "request",
    ),
    (
        "系统登录失败",
        "Cannot log in after password reset",
        "incident",
    ),
    ("订单发货延迟", "Order delivery delayed", "complaint"),
    (
        "设备运行时过热",
        "Device overheats during operation",
        "problem",
    ),
    ("申请延长保修", "Request for extended warranty", "request"),
    ("如何导出报表？", "How do I export reports?", "question"),
    ("账号权限调整", "Change user permissions", "request"),
    (
        "客服响应太慢",
        "Support response time too slow",
        "complaint",
    ),
    ("数据同步异常", "Data sync keeps failing", "problem"),
];

pub(crate) const CN_RESOLUTIONS: &[&str] = &[
    "远程协助后问题已解决。",
    "已更换配件并回访确认。",
    "已按知识库文章指导客户操作。",
    "已重新开具发票。",
];
pub(crate) const EN_RESOLUTIONS: &[&str] = &[
    "Fixed in a remote session.",
    "Replaced the faulty part; customer confirmed.",
    "Walked the customer through the knowledge base article.",
    "Reissued the invoice.",
];

/// Products: code, name, unit price, unit.
pub(crate) const PRODUCTS: &[(&str, &str, &str, &str)] = &[
    ("CRM-ENT", "Enterprise subscription", "1200.00", "seat/year"),
    (
        "CRM-PRO",
        "Professional subscription",
        "600.00",
        "seat/year",
    ),
    ("CRM-STD", "标准版年度订阅", "2400.00", "套/年"),
    ("SVC-IMPL", "Implementation service", "8000.00", "day"),
    ("SVC-TRAIN", "现场培训", "5000.00", "天"),
    ("SVC-SUPPORT", "Premium support", "15000.00", "year"),
    ("HW-S200", "工业传感器 S200", "860.00", "台"),
    ("HW-G10", "网关设备 G10", "3200.00", "台"),
    ("HW-PAD", "Rugged tablet T8", "4500.00", "unit"),
    ("HW-PRN", "Label printer LP-4", "1980.00", "unit"),
    ("SW-API", "API access add-on", "3000.00", "year"),
    ("SW-BI", "数据分析模块", "12000.00", "套"),
    ("SVC-MIG", "Data migration", "20000.00", "project"),
    ("HW-SCAN", "扫码枪 X3", "420.00", "把"),
    ("SVC-ONSITE", "上门维修", "800.00", "次"),
    ("SW-MOBILE", "Mobile app licence", "200.00", "seat/year"),
];

/// Campaigns: name, type.
pub(crate) const CAMPAIGNS: &[(&str, &str)] = &[
    ("春季新品发布会", "event"),
    ("双十一客户回馈邮件", "email"),
    ("Webinar: supply chain visibility", "webinar"),
    ("LinkedIn Q1 campaign", "social"),
    ("高交会展位", "event"),
    ("Telemarketing: dormant accounts", "telemarketing"),
    ("搜索引擎广告投放", "advertising"),
    ("Partner newsletter", "email"),
    ("微信公众号推广", "social"),
    ("Customer conference", "event"),
    ("老客户转介绍计划", "other"),
    ("Trade press advertising", "advertising"),
];

/// Knowledge articles: title, category, language, body.
pub(crate) const ARTICLES: &[(&str, &str, &str, &str)] = &[
    (
        "如何重置密码",
        "账号",
        "zh-CN",
        "在登录页点击“忘记密码”，输入注册邮箱，按邮件中的链接设置新密码。链接24小时内有效。",
    ),
    (
        "How to export reports to Excel",
        "Reports",
        "en",
        "Open the report, choose Export, then Excel. Large reports are emailed to you when ready.",
    ),
    (
        "发票开具常见问题",
        "财务",
        "zh-CN",
        "增值税专用发票需要提供税号、开户行及账号。发票抬头修改请在开票前提交。",
    ),
    (
        "Troubleshooting login failures",
        "Accounts",
        "en",
        "Check the caps lock key, clear the browser cache, and make sure the account is active.",
    ),
    (
        "配置微信消息通知",
        "集成",
        "zh-CN",
        "在设置 → 通知中绑定企业微信，选择需要推送的事件类型。",
    ),
    (
        "Returns and replacement policy",
        "Service",
        "en",
        "Hardware can be returned within 30 days. Faulty units are replaced within 5 working days.",
    ),
    (
        "服务等级与支持时间",
        "服务",
        "zh-CN",
        "紧急工单1小时内响应，4小时内解决；普通工单1个工作日内响应。",
    ),
    (
        "Data import template",
        "Import",
        "en",
        "Download the CSV template, keep the header row, and use one row per record.",
    ),
    (
        "设备过热排查步骤",
        "硬件",
        "zh-CN",
        "检查通风口是否堵塞，确认环境温度低于40℃，必要时更换风扇。",
    ),
    (
        "Sync troubleshooting",
        "Sync",
        "en",
        "Make sure the device is online and its token is valid; run `crm sync` to see the error.",
    ),
];

pub(crate) const CN_ACCOUNT_NOTES: &[&str] = &[
    "对方表示明年预算会增加，需要在三月前提交方案。",
    "客户对价格比较敏感，主要竞争对手报价低10%。",
    "老板亲自参与决策，沟通时注意先约时间。",
    "付款周期较长，通常为月结60天。",
    "已签保密协议，技术交流可以深入。",
];
pub(crate) const EN_ACCOUNT_NOTES: &[&str] = &[
    "Met the buyer at the trade show; interested in the enterprise plan.",
    "Prefers quarterly invoicing. Procurement needs three quotes.",
    "Budget cycle starts in April; follow up in March.",
    "Long payment terms (net 60). Credit check done.",
    "NDA signed, so technical deep-dives are fine.",
];
