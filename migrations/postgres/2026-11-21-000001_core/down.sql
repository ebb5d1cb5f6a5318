DROP TABLE user_groups;
DROP TABLE known_users;
DROP TABLE receipts;
DROP TABLE announcement_targets;
DROP TABLE announcements;
DROP TABLE counters;
DROP TABLE settings;
