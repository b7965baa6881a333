//! Delivery of outbox messages (SMTP, SMS). Filled in by the delivery issue.
