"""Sandbox workers beyond one machine: `MqttPool` (an Executor) and `openlive worker`, over an MQTT broker."""

from sandbox.mqtt.broker import BrokerConfig
from sandbox.mqtt.pool import MqttPool

__all__ = ["BrokerConfig", "MqttPool"]
