// Checks an X-Webhook-Signature with the verifier the WhatsApp Web API's
// own documentation (seed 004) gives receivers, copied unchanged; the body
// is parsed as express.json() would parse it.
// Usage: node wwebjs_verify.js SECRET SIGNATURE < body
const crypto = require('crypto');

function verifyWebhookSignature(payload, signature, secret) {
    const hmac = crypto.createHmac('sha256', secret);
    const computedSignature = hmac.update(JSON.stringify(payload)).digest('hex');
    return crypto.timingSafeEqual(
        Buffer.from(signature),
        Buffer.from(computedSignature)
    );
}

const [secret, signature] = process.argv.slice(2);
let body = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { body += chunk; });
process.stdin.on('end', () => {
    const payload = JSON.parse(body);
    let ok = false;
    try {
        ok = verifyWebhookSignature(payload, signature, secret);
    } catch (err) {
        console.error(String(err));
    }
    if (!ok) {
        console.error('signature rejected by the seed verifier');
        process.exit(1);
    }
    console.log('ok');
});
