"""Which of control's AMI links reports the queue's members (hotline/roles/node_links.py):
the queue node's link when control links one besides its ``[ami]``; else the ``[ami]`` link
(one box, or a cluster whose media nodes queue their own callers). Control's ``[ami]``
link to a media node then publishes callers' events only (hotline/roles/control.py): that
node's queue has no members, and its empty QueueSnapshot would wipe the wallboard's."""

from __future__ import annotations

from hotline.edge.settings import MediaNode
from hotline.roles.node_links import queue_node_linked
from hotline.settings import Settings


def cluster(**edge: object) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"edge": settings.edge.model_copy(
        update={"control_links": True, **edge})})


def test_the_queue_nodes_link_reports_the_members_when_control_links_one() -> None:
    assert not queue_node_linked(Settings())  # one box: no links besides [ami]
    assert queue_node_linked(cluster())  # the default cluster: queue-1 and queue-2
    assert not queue_node_linked(cluster(queue_nodes=[]))  # media nodes queue themselves


def test_a_queue_node_that_is_controls_own_ami_is_not_linked_twice() -> None:
    settings = cluster(queue_nodes=[MediaNode(name="queue-1", address="127.0.0.12")])
    own = settings.model_copy(update={"ami": settings.ami.model_copy(
        update={"host": "127.0.0.12", "port": 5038})})
    assert queue_node_linked(settings) and not queue_node_linked(own)
