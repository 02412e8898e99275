-- Every query on the timeline names one incident, and the index in time
-- order (0015) serves them all, so the older (incident_id, id) index only
-- cost a write per timeline row: one fewer for every command and alert.
DROP INDEX incident_events_by_incident;
