# Sends N freshly signed Taktikal events over one kept-alive connection: python3 send.py PORT N
import hmac, hashlib, base64, json, time, uuid, http.client, sys
port=int(sys.argv[1]); n=int(sys.argv[2])
ev=json.load(open(__import__('os').path.join(__import__('os').path.dirname(__file__), '../../providers/tests/fixtures/taktikal/all_signed.json')))
key=b'callgrind-bench-key'
def body():
    ticks=621355968000000000+int(time.time()*10_000_000)
    guid=str(uuid.uuid4())
    sig=base64.b64encode(hmac.new(key,(str(ticks)+guid).encode(),hashlib.sha256).digest()).decode()
    ev['Id']=uuid.uuid4().hex
    ev['EventSignature']={"TimeStamp":ticks,"Guid":guid,"Signature":sig,"SignedData":f"{ticks}{guid}"}
    return json.dumps(ev).encode()
c=http.client.HTTPConnection('127.0.0.1',port,timeout=60)
ok=0
for i in range(n):
    c.request('POST','/webhooks/acme',body(),{'Content-Type':'application/json'})
    r=c.getresponse(); r.read()
    ok+= r.status==200
print(ok)
