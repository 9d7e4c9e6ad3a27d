//! Service, marketing and customer-management workflows: tickets and SLAs, campaigns, surveys, accounts.
