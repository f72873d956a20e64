"""Acting on transitions: marketplace bulk updates as rules, run through the outbox."""
