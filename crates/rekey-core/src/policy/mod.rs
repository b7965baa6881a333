//! The rules an instance and its tenants configure: settings and their defaults, the password
//! policy and link templates.

pub mod password;
pub mod settings;
pub mod tenant_settings;
pub mod url_template;

pub use password::{PasswordPolicy, PasswordRule};
pub use settings::{validate_login_url, Config, EffectiveSettings, Limits, MAX_CODE_ATTEMPTS};
pub use tenant_settings::{SettingError, TenantSetting, TENANT_SETTINGS};
pub use url_template::{UrlTemplate, Values};
