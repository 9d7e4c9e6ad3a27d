//! Sales and activity workflows: leads, opportunities, quotes to orders, reminders.
