-- Events held back by the backlog breaker (state 'waiting') are resumed oldest first.
CREATE INDEX events_waiting ON events (id) WHERE state = 'waiting';
