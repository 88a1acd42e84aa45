"""The contract between the telephone side and the CRM: the call events the IVR publishes, and the
small interfaces through which the CRM asks Asterisk for something (queue membership, transfers,
return-visit calls). Imports nothing of the CRM but its exception tree."""
