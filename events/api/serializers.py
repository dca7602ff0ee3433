"""Response shapes of merchant events."""

from rest_framework import serializers

from events.models import Event


class EventOut(serializers.Serializer):
    id = serializers.CharField(source="public_id", help_text="Unique; use it to ignore a delivery seen before.")
    type = serializers.ChoiceField(choices=Event.Type.choices)
    created_at = serializers.DateTimeField()
    data = serializers.JSONField(help_text="The object the event is about, as it was then.")
    merchant_id = serializers.CharField(source="merchant.user_id")
    delivery_status = serializers.ChoiceField(choices=Event.Delivery.choices)
    delivery_attempts = serializers.IntegerField(source="attempts")
    delivered_at = serializers.DateTimeField(allow_null=True)
