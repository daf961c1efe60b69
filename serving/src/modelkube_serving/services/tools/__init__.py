"""Tool calling: which tools a request offers and how it may call them (`plan`), the prompt
that shows them to the model (`prompt`), and the grammar that enforces a call (`grammar`)."""
