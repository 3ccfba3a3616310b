"""DDS cost of one message between two processes (session 6, NOTES.md): run a subscriber and a publisher
(same message kind, 1,000 messages/s for ~7 s) and read the CPU time per message each side reports.

    python dds_cost.py sub 1000 8 obs &  sleep 1;  python dds_cost.py pub 1000 7 obs;  wait
    (kinds: obs = Observation 4x84x84 + 40 floats, rew = StepReward with 12 terms, cmd = VehicleCommand)
The publisher paces itself with time.sleep (~50 us of CPU per call on the dev machine, included in its figure).
"""
import sys, time, os, rclpy
from carla_rl_interfaces.msg import Observation, StepReward, VehicleCommand
from carla_rl.nodes import qos_profiles as qos
from rclpy.experimental import EventsExecutor
role=sys.argv[1]; rate=float(sys.argv[2]); dur=float(sys.argv[3]); kind=sys.argv[4]
T={'obs':Observation,'rew':StepReward,'cmd':VehicleCommand}[kind]
rclpy.init(); n=rclpy.create_node('dds_'+role)
cnt=[0]
if role=='sub':
    n.create_subscription(T,'/ddsb/t',lambda m: cnt.__setitem__(0,cnt[0]+1),qos.SENSOR)
    ex=EventsExecutor(); ex.add_node(n)
    t0=time.monotonic(); c0=time.process_time()
    while time.monotonic()-t0<dur: ex.spin_once(timeout_sec=0.1)
    print('sub', cnt[0], 'msgs cpu/msg us', 1e6*(time.process_time()-c0)/max(cnt[0],1))
else:
    p=n.create_publisher(T,'/ddsb/t',qos.SENSOR)
    m=T()
    if kind=='obs':
        import array
        m.frames=array.array('B',bytes(4*84*84)); m.vector=array.array('f',[0.0]*40); m.frame_stack=4; m.height=84; m.width=84
    if kind=='rew': m.term_names=['a%d'%i for i in range(12)]; m.term_values=[0.0]*12
    while p.get_subscription_count()==0: time.sleep(0.05)
    time.sleep(0.5)
    t0=time.monotonic(); c0=time.process_time(); k=0
    while time.monotonic()-t0<dur-1:
        p.publish(m); k+=1
        nxt=t0+k/rate
        d=nxt-time.monotonic()
        if d>0: time.sleep(d)
    print('pub', k, 'cpu/msg us', 1e6*(time.process_time()-c0)/k)
