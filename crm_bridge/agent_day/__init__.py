"""The agent's day outside the screen pop: their own calls and today's figures
(``/me/history``), the missed and abandoned calls to call back and who took each
(``/me/callbacks``), and the customer archive searched and edited outside a call
(``/customers``)."""
