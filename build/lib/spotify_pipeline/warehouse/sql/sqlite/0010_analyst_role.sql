-- SQLite has no roles: the analyst role exists on PostgreSQL only. This file keeps the version numbers
-- of both backends in step.
SELECT 1;
