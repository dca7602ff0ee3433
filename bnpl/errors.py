"""Domain errors of plans and installments, each with its HTTP status and stable code."""

from core.problems import DomainError


class DebtUserForbidden(DomainError):
    status_code = 403
    code = "debt_user_forbidden"
    title = "Customer has overdue debt"
    default_detail = "Users with DEBT_USER status cannot create new BNPL plans"


class CreditLimitExceeded(DomainError):
    status_code = 422
    code = "credit_limit_exceeded"
    title = "Credit limit exceeded"
    default_detail = "This plan would take the customer's outstanding balance above their credit limit."


class LateFeeNotWaivable(DomainError):
    status_code = 409
    code = "late_fee_not_waivable"
    title = "Late fee cannot be waived"
    default_detail = "Only a late fee that is still due can be waived."


class LateFeePaymentPending(DomainError):
    status_code = 409
    code = "late_fee_payment_pending"
    title = "Late fee being paid"
    default_detail = "A payment of this late fee is in progress; waive it once that payment has succeeded or failed."
