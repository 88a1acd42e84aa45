"""Translators between Asterisk and the rest: AMI events become call and queue events; the CRM's
requests (queue membership, transfers, return-visit calls) become AMI actions."""
