//! Apps from a database (filled in below).

/// Whether `url` names a database this module can read apps from.
pub fn is_database_url(url: &str) -> bool {
    ["postgres://", "postgresql://", "mysql://", "mariadb://"]
        .iter()
        .any(|p| url.starts_with(p))
}
