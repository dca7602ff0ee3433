"""Every change to plans, installments and late fees, by topic: ``origination``,
``installments`` (the one writer of installment and fee state), ``late_fees``, ``sweep``
and ``reminders``."""
