"""The toolkit's callback: iotex_start_gate (a run held at its start until its caller is ready)."""
