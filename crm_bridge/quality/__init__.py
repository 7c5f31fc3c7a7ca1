"""Quality review (质检): the scorecard a supervisor fills while listening to a call, and the
figures per agent that the KPIs show (see ``scorecard``)."""
