"""Domain errors of plans and installments, each with its HTTP status and stable code."""

from core.problems import DomainError


class DebtUserForbidden(DomainError):
    status_code = 403
    code = "debt_user_forbidden"
    title = "Customer has overdue debt"
    default_detail = "Users with DEBT_USER status cannot create new BNPL plans"


class CreditDeclined(DomainError):
    """The plan does not fit the customer's credit. The merchant is told only that; the
    customer (confirming) also gets their own figures, as extra fields."""

    status_code = 422
    code = "credit_declined"
    title = "Credit declined"
    default_detail = "The customer cannot take this plan."


class PlanNotPending(DomainError):
    status_code = 409
    code = "plan_not_pending"
    title = "Plan is not awaiting the customer"
    default_detail = "Only a PENDING plan can be confirmed or declined."


class PlanNotAuthorized(DomainError):
    status_code = 409
    code = "plan_not_authorized"
    title = "Plan is not authorized"
    default_detail = "Only an AUTHORIZED plan can be captured or voided."


class CaptureExceedsAuthorized(DomainError):
    status_code = 422
    code = "capture_exceeds_authorized"
    title = "Capture above the authorized amount"
    default_detail = "A capture may not exceed the amount the customer authorized."


class MerchantReferenceConflict(DomainError):
    status_code = 409
    code = "merchant_reference_conflict"
    title = "Merchant reference already used"
    default_detail = "This merchant_reference names another plan of yours (other customer, amount or terms)."


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
