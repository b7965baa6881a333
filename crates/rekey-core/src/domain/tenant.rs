//! A tenant (= ZITADEL organization, = F5 tenant) and its own settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::cname::Cname;
use crate::domain::ids::TenantId;

/// A tenant (= ZITADEL organization, = F5 tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub cname: Cname,
    pub settings: TenantSettings,
    pub creation_date: DateTime<Utc>,
    pub change_date: DateTime<Utc>,
}

/// Which generator a tenant's codes come from (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeAlphabet {
    /// `ABCDEFGHJKMNPQRSTUVWXYZ23456789`, no look-alikes.
    Rekey,
    /// ZITADEL's generator: A–Z and 0–9.
    Zitadel,
}

/// Per-tenant settings; `None` means "use the instance default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_alphabet: Option<CodeAlphabet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_expiry_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_init_expiry_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_min_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_max_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_lower: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_upper: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_digit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_symbol: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_messages_per_user_per_hour: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Where the hosted pages send a person after a successful change (`ui.login_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_login_url: Option<String>,
}

/// A v2 organization reference: by id, or by domain (Rekey: the tenant's cname).
#[derive(Debug, Clone)]
pub enum OrgRef {
    Id(TenantId),
    Domain(String),
}
