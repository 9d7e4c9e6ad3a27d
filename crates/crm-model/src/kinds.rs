//! One schema per record kind, each in its own file.

pub mod account;
pub mod account_relation;
pub mod activity;
pub mod article;
pub mod campaign;
pub mod campaign_member;
pub mod contact;
pub mod contract;
pub mod lead;
pub mod opportunity;
pub mod order;
pub mod product;
pub mod quote;
pub mod survey;
pub mod survey_response;
pub mod team;
pub mod ticket;
pub mod user;
