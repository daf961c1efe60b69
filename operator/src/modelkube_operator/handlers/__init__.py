"""kopf's side of the operator. `registration` registers every handler when imported; the
other modules are plain functions it calls, one module per resource kind or job."""
