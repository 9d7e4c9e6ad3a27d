//! Names, addresses, phone numbers and email addresses of generated companies and people.

use std::time::Duration;

use crm_model::Kind;

use crate::Write;
use crate::seeder::{Lang, Seeder};
use crate::words::{
    CITIES, CN_BRANDS, CN_GIVEN, CN_ROADS, CN_SUFFIXES, CN_SURNAMES, CN_ZONES, EN_FIRST, EN_LAST,
    EN_NAMES, PLACES, TRADES, Trade,
};

/// A generated company.
pub(crate) struct Company {
    pub(crate) lang: Lang,
    pub(crate) name: String,
    pub(crate) short: String,
    pub(crate) trade: &'static Trade,
    pub(crate) domain: String,
    pub(crate) address: String,
    /// A landline of the company's city.
    pub(crate) phone: String,
}

impl Company {
    /// The host of the company's website, which is also its email domain.
    pub(crate) fn host(&self) -> String {
        crm_model::normalize_domain(&self.domain).unwrap_or_else(|_| "example.com".into())
    }
}

/// A generated person.
#[derive(Clone)]
pub(crate) struct Person {
    pub(crate) lang: Lang,
    pub(crate) first: String,
    pub(crate) last: String,
    /// How the name is written in full: 王伟, or Emma Wilson.
    pub(crate) full: String,
    /// The local part of their email address: wang.wei, or emma.wilson.
    pub(crate) email_local: String,
}

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// A company name not given out before (when `unique`).
    pub(crate) fn company(&mut self, lang: Lang, unique: bool) -> Company {
        let mut company = self.company_draw(lang);
        let mut tries = 0;
        while unique && self.names.contains(&company.name) {
            tries += 1;
            if tries < 6 {
                company = self.company_draw(lang);
                continue;
            }
            // Every combination is taken often enough: name a branch office, as real
            // company registers do.
            let branch = match lang {
                Lang::Cn => format!("{}{}分公司", company.name, self.pick(CITIES).name),
                Lang::En => format!("{} {}", company.name, self.between(2, 999)),
            };
            company.name = branch;
        }
        if unique {
            self.names.insert(company.name.clone());
        }
        company
    }

    fn company_draw(&mut self, lang: Lang) -> Company {
        let trade = self.pick(TRADES);
        match lang {
            Lang::Cn => {
                let city = self.pick(CITIES);
                let (brand, brand_py) = *self.pick(CN_BRANDS);
                let suffix = self.word(CN_SUFFIXES);
                let tld = self.word(&["com", "cn", "com.cn"]);
                let n = self.between(1, 999);
                let zone = self.word(CN_ZONES);
                let road = self.word(CN_ROADS);
                let phone = self.landline(city.area_code);
                let domain = if self.chance(0.3) {
                    format!("www.{}{brand_py}.cn", city.pinyin)
                } else {
                    format!("www.{brand_py}{}.{tld}", trade.pinyin)
                };
                Company {
                    lang,
                    name: format!("{}{brand}{}{suffix}", city.name, trade.cn),
                    short: format!("{brand}{}", trade.cn),
                    trade,
                    domain,
                    address: format!("{}{}市{zone}{road}{n}号", city.province, city.name),
                    phone,
                }
            }
            Lang::En => {
                let base = self.word(EN_NAMES);
                let place = self.pick(PLACES);
                let n = self.between(1, 400);
                let digits = self.between(1000, 9999);
                let slug = base.to_lowercase().replace(' ', "");
                let trade_slug = trade.en.to_lowercase();
                Company {
                    lang,
                    name: format!("{base} {} {}", trade.en, place.suffix),
                    short: format!("{base} {}", trade.en),
                    trade,
                    domain: format!("https://www.{slug}-{trade_slug}.{}/", place.tld),
                    address: format!("{n} {}, {}", place.street, place.city),
                    phone: format!("{} {digits}", place.phone),
                }
            }
        }
    }

    pub(crate) fn person(&mut self, lang: Lang) -> Person {
        match lang {
            Lang::Cn => {
                let (last, last_py) = *self.pick(CN_SURNAMES);
                let (first, first_py) = *self.pick(CN_GIVEN);
                Person {
                    lang,
                    first: first.into(),
                    last: last.into(),
                    full: format!("{last}{first}"),
                    email_local: format!("{last_py}.{first_py}"),
                }
            }
            Lang::En => {
                let first = self.word(EN_FIRST);
                let last = self.word(EN_LAST);
                let ascii: String = last
                    .chars()
                    .filter_map(|c| match c {
                        'ü' => Some('u'),
                        c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
                        _ => None,
                    })
                    .collect();
                Person {
                    lang,
                    first: first.into(),
                    last: last.into(),
                    full: format!("{first} {last}"),
                    email_local: format!("{}.{ascii}", first.to_lowercase()),
                }
            }
        }
    }

    /// A mobile number of the person's country.
    pub(crate) fn mobile(&mut self, lang: Lang) -> String {
        match lang {
            Lang::Cn => {
                let prefix = self.word(&["135", "138", "139", "150", "186", "188", "177"]);
                format!(
                    "+86 {prefix} {:04} {:04}",
                    self.between(0, 9999),
                    self.between(0, 9999)
                )
            }
            Lang::En => {
                let place = self.pick(PLACES);
                format!("{} {:04}", place.phone, self.between(0, 9999))
            }
        }
    }

    fn landline(&mut self, area_code: &str) -> String {
        format!(
            "+86 {area_code} {:04} {:04}",
            self.between(2000, 8999),
            self.between(0, 9999)
        )
    }
}
